/**
 * Route 53 Resolver query logs and Route 53 DNS Firewall records.
 * `{version, account_id, region, vpc_id, query_timestamp, query_name, query_type,
 * query_class, rcode, answers:[{Rdata, Type, Class}], srcaddr, srcport, transport,
 * srcids, firewall_rule_action?, firewall_rule_group_id?, firewall_domain_list_id?}`
 */
import type { ParsedRecord } from "../types.js";
import type { JsonObject } from "./common.js";
import { isObject } from "./common.js";

/** `query_name` plus `answers[]` (or a firewall action / query type when answers are missing). */
export function isRoute53(o: JsonObject): boolean {
  return (
    typeof o.query_name === "string" &&
    (Array.isArray(o.answers) || o.firewall_rule_action !== undefined || typeof o.query_type === "string")
  );
}

/**
 * Every A/AAAA answer's `Rdata` in order (CNAME names too when `Type` is absent;
 * extract tells IPs from names). An answer whose `Type` says otherwise (TXT,
 * PTR, MX…) is left out: its text may look like an IP without being one.
 */
export function parseRoute53(o: JsonObject): ParsedRecord {
  const answers: string[] = [];
  const list = o.answers;
  if (Array.isArray(list)) {
    for (const a of list) {
      if (isObject(a) && typeof a.Rdata === "string" && (a.Type === undefined || a.Type === "A" || a.Type === "AAAA")) {
        answers.push(a.Rdata);
      }
    }
  }
  return {
    kind: o.firewall_rule_action !== undefined ? "dns_firewall" : "route53",
    record: o,
    queryName: o.query_name as string,
    answers,
  };
}
