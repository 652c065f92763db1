/**
 * ECS / Elastic Agent / Packetbeat DNS events:
 * `dns.question.name`, `dns.answers[].data`, `dns.resolved_ip[]`.
 */
import type { ParsedRecord } from "../types.js";
import type { JsonObject } from "./common.js";
import { isObject } from "./common.js";

/** A `dns` object with `answers[]`, `resolved_ip[]` or a `question`. */
export function isEcs(o: JsonObject): boolean {
  const dns = o.dns;
  return isObject(dns) && (Array.isArray(dns.answers) || Array.isArray(dns.resolved_ip) || isObject(dns.question));
}

/** `dns.answers[].data` in order, then `dns.resolved_ip[]` (extract drops the repeats). */
export function parseEcs(o: JsonObject): ParsedRecord {
  const dns = o.dns as JsonObject;
  const answers: string[] = [];
  if (Array.isArray(dns.answers)) {
    for (const a of dns.answers) {
      if (isObject(a) && typeof a.data === "string") answers.push(a.data);
    }
  }
  if (Array.isArray(dns.resolved_ip)) {
    for (const ip of dns.resolved_ip) {
      if (typeof ip === "string") answers.push(ip);
    }
  }
  const rec: ParsedRecord = { kind: "ecs", record: o, answers };
  const q = dns.question;
  if (isObject(q) && typeof q.name === "string") rec.queryName = q.name;
  return rec;
}
