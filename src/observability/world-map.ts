/**
 * The world's land outline as one SVG path, from the Natural Earth 1:110m land
 * TopoJSON of the `world-atlas` package: drawn offline, no map tiles fetched.
 * Projection: equirectangular on a 360 × 180 box (x = lon + 180, y = 90 − lat),
 * so a location is placed by the same two subtractions on the page.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

interface Topology {
  transform: { scale: [number, number]; translate: [number, number] };
  arcs: Array<Array<[number, number]>>;
  objects: Record<string, { type: string; geometries: Array<{ type: string; arcs: number[][] | number[][][] }> }>;
}

/** Map width and height in SVG units. */
export const MAP_WIDTH = 360;
export const MAP_HEIGHT = 180;

/** SVG x, y of a longitude and latitude in degrees. */
export function project(lon: number, lat: number): [number, number] {
  return [lon + 180, 90 - lat];
}

const r1 = (v: number): string => (Math.round(v * 10) / 10).toString();

/** Decodes the quantized, delta-encoded arcs into absolute longitude/latitude points. */
function decodeArcs(t: Topology): Array<Array<[number, number]>> {
  const [sx, sy] = t.transform.scale;
  const [tx, ty] = t.transform.translate;
  return t.arcs.map((arc) => {
    let x = 0;
    let y = 0;
    return arc.map(([dx, dy]) => {
      x += dx;
      y += dy;
      return [x * sx + tx, y * sy + ty] as [number, number];
    });
  });
}

/** One ring (a list of arc indices; ~i is arc i reversed) as an SVG subpath. */
function ring(indices: number[], arcs: Array<Array<[number, number]>>): string {
  const pts: Array<[number, number]> = [];
  for (const i of indices) {
    const arc = i >= 0 ? (arcs[i] ?? []) : [...(arcs[~i] ?? [])].reverse();
    // Consecutive arcs share their joining point.
    for (let k = pts.length === 0 ? 0 : 1; k < arc.length; k++) pts.push(arc[k] as [number, number]);
  }
  if (pts.length < 3) return "";
  // A ring that crosses the antimeridian (Chukotka, Fiji) would draw a line across the
  // whole map: a jump of more than half the world starts a new subpath instead.
  let prevLon = Number.NaN;
  let jumped = false;
  const d = pts
    .map(([lon, lat], k) => {
      const [x, y] = project(lon, lat);
      const jump = k > 0 && Math.abs(lon - prevLon) > 180;
      if (jump) jumped = true;
      prevLon = lon;
      return `${k === 0 || jump ? "M" : "L"}${r1(x)} ${r1(y)}`;
    })
    .join("");
  return jumped ? d : d + "Z";
}

/** Decodes the `land` object of a TopoJSON topology into one SVG path `d`. */
export function landPath(topology: Topology): string {
  const arcs = decodeArcs(topology);
  const land = topology.objects.land;
  if (!land) throw new Error("topology has no land object");
  const parts: string[] = [];
  for (const g of land.geometries) {
    const polygons = g.type === "Polygon" ? [g.arcs as number[][]] : g.type === "MultiPolygon" ? (g.arcs as number[][][]) : [];
    for (const poly of polygons) for (const r of poly) parts.push(ring(r, arcs));
  }
  return parts.join("");
}

let cached: string | undefined;

/** The land path of the bundled 1:110m outline (read once). */
export function worldLandPath(): string {
  if (cached === undefined) {
    const file = createRequire(import.meta.url).resolve("world-atlas/land-110m.json");
    cached = landPath(JSON.parse(readFileSync(file, "utf8")) as Topology);
  }
  return cached;
}
