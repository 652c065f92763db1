/**
 * Every Prometheus metric dnsgeo exports. Label values come from closed
 * vocabularies only (never an IP, a domain or a path from a request).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { buildInfo } from "../version.js";

export interface Metrics {
  registry: Registry;
  /** result: enriched | partial | pending | skipped | error | unparsed */
  records: Counter<"result">;
  /** tier: memory | sqlite | dynamodb | ipapi | mmdb; outcome: hit | miss | stale | error | timeout */
  lookups: Counter<"tier" | "outcome">;
  /** provider: ipapi; code: HTTP status as text, or error | timeout */
  providerRequests: Counter<"provider" | "code">;
  /** IPs sent to a provider. */
  providerIps: Counter<"provider">;
  /** Requests (batches) left in the provider's current window. */
  limiterRemaining: Gauge<"provider">;
  /** queue: backfill | sqlite_write | dynamodb_write | redis_write | policy_alert */
  queueDepth: Gauge<"queue">;
  /** Items dropped from a bounded queue (oldest first). */
  queueDropped: Counter<"queue">;
  /** Errors and timeouts of a tier that were skipped over. */
  tierErrors: Counter<"tier">;
  /** transport: http | grpc | cli; route: closed set of route names */
  requestDuration: Histogram<"transport" | "route">;
  /** Requests refused at once because of overload or limits; reason: overload | too_large | too_many_records | unauthorized */
  refused: Counter<"transport" | "reason">;
  /** Connections open now, per listening port. */
  openConnections: Gauge<"transport">;
  /** Connections closed by dnsgeo's connection limits; reason: max_connections | evicted | first_byte_timeout */
  connectionsClosed: Counter<"transport" | "reason">;
  /** gRPC answer bytes handed to grpc-js and not yet written to their client. */
  grpcUnsentAnswerBytes: Gauge;
  /** Open gRPC health Watch streams. */
  grpcWatchStreams: Gauge;
  /** Forward mode, requests to the next hop; class: 2xx | 3xx | 4xx | 5xx | error (no answer) */
  forwardRequests: Counter<"class">;
  /** Forward mode, time from sending a request to the next hop's answer. */
  forwardDuration: Histogram;
  /** Forward mode, body bytes sent to the next hop (after compression). */
  forwardBytes: Counter;
  /** Forward mode, batches cut in two after the next hop refused them (413 or another 4xx). */
  forwardSplits: Counter;
  /** Forward mode, records written to the dead-letter file. */
  forwardDeadLetterRecords: Counter;
  /** Forward mode, size of the dead-letter file in bytes. */
  forwardDeadLetterBytes: Gauge;
  /** Records whose answers (or query name) matched a policy rule; rule: the rule's configured name. */
  policyMatches: Counter<"rule">;
  /** Policy webhook alerts; outcome: sent | failed (retries used up) | dropped (queue full) | deduplicated */
  policyAlerts: Counter<"outcome">;
  /** Policy rule reloads (SIGHUP, rules file change); result: ok | error (old rules kept) */
  policyReloads: Counter<"result">;
  /** Policy rules in use. */
  policyRules: Gauge;
  /** Always 1; the labels say which build runs (version, node, commit when known). */
  buildInfo: Gauge<"version" | "node" | "commit">;
  /** Fluent forward listener, messages by result: delivered | next_hop_unavailable | malformed | undecodable | too_large | failed | unauthorized (connection refused at the handshake). */
  fluentMessages: Counter<"result">;
  /** Fluent forward listener, records (events) of the messages delivered to the next hop. */
  fluentRecords: Counter;
  /** Fluent forward next hop, messages sent by result: acked | failed (no ack in time, connection lost or refused; sent again within fluent.timeout_ms). */
  fluentNextHopMessages: Counter<"result">;
  /** Fluent forward next hop, time from sending a message to its ack. */
  fluentNextHopDuration: Histogram;
}

/** Creates the metrics on a fresh registry (one per app, so tests don't collide). */
export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: "dnsgeo_" });
  const registers = [registry];
  return {
    registry,
    records: new Counter({ name: "dnsgeo_records_total", help: "Records processed, by result", labelNames: ["result"], registers }),
    lookups: new Counter({ name: "dnsgeo_lookups_total", help: "IP lookups per tier and outcome", labelNames: ["tier", "outcome"], registers }),
    providerRequests: new Counter({ name: "dnsgeo_provider_requests_total", help: "Requests sent to a geo provider, by answer code", labelNames: ["provider", "code"], registers }),
    providerIps: new Counter({ name: "dnsgeo_provider_ips_total", help: "IPs sent to a geo provider", labelNames: ["provider"], registers }),
    limiterRemaining: new Gauge({ name: "dnsgeo_provider_budget_remaining", help: "Provider requests left in the current window", labelNames: ["provider"], registers }),
    queueDepth: new Gauge({ name: "dnsgeo_queue_depth", help: "Items waiting in a background queue", labelNames: ["queue"], registers }),
    queueDropped: new Counter({ name: "dnsgeo_queue_dropped_total", help: "Items dropped from a full background queue (oldest first)", labelNames: ["queue"], registers }),
    tierErrors: new Counter({ name: "dnsgeo_tier_errors_total", help: "Tier calls that failed or timed out and were skipped", labelNames: ["tier"], registers }),
    requestDuration: new Histogram({
      name: "dnsgeo_request_duration_seconds",
      help: "Request handling time by transport and route",
      labelNames: ["transport", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    refused: new Counter({ name: "dnsgeo_requests_refused_total", help: "Requests refused at once, by reason", labelNames: ["transport", "reason"], registers }),
    openConnections: new Gauge({ name: "dnsgeo_open_connections", help: "Connections open now, per listening port", labelNames: ["transport"], registers }),
    connectionsClosed: new Counter({ name: "dnsgeo_connections_closed_total", help: "Connections closed by the connection limits (refused at the cap, idle one closed to make room, no first byte in time)", labelNames: ["transport", "reason"], registers }),
    grpcUnsentAnswerBytes: new Gauge({ name: "dnsgeo_grpc_unsent_answer_bytes", help: "gRPC answer bytes not yet written to their clients", registers }),
    grpcWatchStreams: new Gauge({ name: "dnsgeo_grpc_watch_streams", help: "Open gRPC health Watch streams", registers }),
    fluentMessages: new Counter({ name: "dnsgeo_fluent_messages_total", help: "Fluent forward messages received, by result", labelNames: ["result"], registers }),
    fluentRecords: new Counter({ name: "dnsgeo_fluent_records_total", help: "Records of the Fluent forward messages delivered to the next hop", registers }),
    fluentNextHopMessages: new Counter({ name: "dnsgeo_fluent_next_hop_messages_total", help: "Messages sent to the Fluent forward next hop, by result", labelNames: ["result"], registers }),
    fluentNextHopDuration: new Histogram({
      name: "dnsgeo_fluent_next_hop_ack_seconds",
      help: "Time from sending a message to the Fluent forward next hop until its ack",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    forwardRequests: new Counter({ name: "dnsgeo_forward_requests_total", help: "Requests to the forward next hop, by answer class (error: no answer)", labelNames: ["class"], registers }),
    forwardDuration: new Histogram({
      name: "dnsgeo_forward_request_duration_seconds",
      help: "Time until the forward next hop answered a request",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    forwardBytes: new Counter({ name: "dnsgeo_forward_bytes_total", help: "Body bytes sent to the forward next hop (after compression)", registers }),
    forwardSplits: new Counter({ name: "dnsgeo_forward_splits_total", help: "Forwarded batches cut in two after the next hop refused them", registers }),
    forwardDeadLetterRecords: new Counter({ name: "dnsgeo_forward_dead_letter_records_total", help: "Records the next hop refused, written to the dead-letter file", registers }),
    forwardDeadLetterBytes: new Gauge({ name: "dnsgeo_forward_dead_letter_bytes", help: "Size of the forward dead-letter file in bytes", registers }),
    policyMatches: new Counter({ name: "dnsgeo_policy_matches_total", help: "Records that matched a policy rule, by rule name", labelNames: ["rule"], registers }),
    policyAlerts: new Counter({ name: "dnsgeo_policy_alerts_total", help: "Policy webhook alerts by outcome (sent, failed, dropped, deduplicated)", labelNames: ["outcome"], registers }),
    policyReloads: new Counter({ name: "dnsgeo_policy_reloads_total", help: "Policy rule reloads by result (ok, error: old rules kept)", labelNames: ["result"], registers }),
    policyRules: new Gauge({ name: "dnsgeo_policy_rules", help: "Policy rules in use", registers }),
    buildInfo: buildInfoGauge(registers),
  };
}

function buildInfoGauge(registers: Registry[]): Gauge<"version" | "node" | "commit"> {
  const b = buildInfo();
  // Without a known commit the label is left out (prom-client prints only the labels set).
  const g = new Gauge({ name: "dnsgeo_build_info", help: "Which build runs: always 1, labelled with version, Node.js version and source commit when known", labelNames: ["version", "node", "commit"], registers });
  g.set(b.commit ? { version: b.version, node: b.node, commit: b.commit } : { version: b.version, node: b.node }, 1);
  return g;
}
