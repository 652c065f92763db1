/**
 * The one schema of `--format quicksight` rows: every row carries exactly these
 * columns, in this order, `null` when a value is absent. The Athena DDL
 * (`examples/quicksight/athena-table.sql`) declares the same columns with the same
 * types; a test checks rows of every input kind and the DDL against this list.
 *
 * To add a column: add it here (name, Athena type, one line of meaning), write it in
 * `format-quicksight.ts`, and add it to the DDL and the table in docs/output-schema.md.
 */

/** One column: its name, its Athena/Hive type, and what it holds. */
export interface QuicksightColumnSpec {
  readonly name: string;
  readonly type: "string" | "double" | "bigint";
  readonly doc: string;
}

export const QUICKSIGHT_SCHEMA = [
  { name: "record_kind", type: "string", doc: "kind of record: route53, dns_firewall, ocsf, ecs, zeek, sysmon, custom, unknown" },
  { name: "event_time", type: "string", doc: "the record's own time, as its text (Route 53 query_timestamp, ECS @timestamp, Zeek ts, Sysmon UtcTime, OCSF time)" },
  { name: "query_name", type: "string", doc: "queried name" },
  { name: "query_type", type: "string", doc: "query type (A, AAAA, …) where the record has one" },
  { name: "rcode", type: "string", doc: "response code as the record writes it (NOERROR, NXDOMAIN, a Sysmon QueryStatus number…)" },
  { name: "src_ip", type: "string", doc: "the client that asked (Route 53 srcaddr, ECS source.ip/client.ip, Zeek id.orig_h, OCSF src_endpoint.ip)" },
  { name: "answers", type: "string", doc: "the record's answer data (IPs and names), ';'-joined" },
  { name: "firewall_rule_action", type: "string", doc: "Route 53 DNS Firewall action (ALLOW, BLOCK, ALERT)" },
  { name: "log_group", type: "string", doc: "CloudWatch Logs group of a record that came in a subscription envelope" },
  { name: "log_stream", type: "string", doc: "CloudWatch Logs stream of that record" },
  { name: "answer_ip", type: "string", doc: "the row's answer IP: the primary (first public) answer, or the exploded one" },
  { name: "answer_ips", type: "string", doc: "every answer IP of the record, ';'-joined" },
  { name: "geo_lat", type: "double", doc: "latitude, decimal degrees" },
  { name: "geo_lon", type: "double", doc: "longitude, decimal degrees" },
  { name: "geo_country_code", type: "string", doc: "ISO 3166-1 alpha-2" },
  { name: "geo_country", type: "string", doc: "country name" },
  { name: "geo_region", type: "string", doc: "region name" },
  { name: "geo_city", type: "string", doc: "city" },
  { name: "geo_postal_code", type: "string", doc: "postal code" },
  { name: "geo_timezone", type: "string", doc: "IANA time zone" },
  { name: "as_number", type: "bigint", doc: "autonomous system number" },
  { name: "as_org", type: "string", doc: "autonomous system organisation" },
  { name: "org", type: "string", doc: "organisation (ip-api only)" },
  { name: "isp", type: "string", doc: "ISP (ip-api only)" },
  { name: "enrichment_status", type: "string", doc: "enriched, partial, pending, skipped or error" },
  { name: "enrichment_reason", type: "string", doc: "why the row has no geo data (skip reason, not_found, pending…)" },
  { name: "policy_tags", type: "string", doc: "tags of the policy rules the row's answers (or query name) matched, ';'-joined (policy.rules)" },
  { name: "record", type: "string", doc: "the original record as JSON text, exactly as it came (json_extract_scalar(record, '$.field') in Athena)" },
] as const satisfies readonly QuicksightColumnSpec[];

/** Name of a QuickSight column. */
export type QuicksightRowColumn = (typeof QUICKSIGHT_SCHEMA)[number]["name"];

/** The column names of every QuickSight row, in order. */
export const QUICKSIGHT_ROW_COLUMNS: readonly QuicksightRowColumn[] = QUICKSIGHT_SCHEMA.map((c) => c.name);
