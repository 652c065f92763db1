/** A real grpc-js client for dnsgeo.v1.Enrichment, health and reflection (tests and bench). */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createRequire } from "node:module";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { enrichmentProtoPath, PROTO_OPTIONS } from "../../../src/transport/grpc-server.js";

type Ctor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => grpc.Client;

const def = protoLoader.loadSync([enrichmentProtoPath(), healthProtoPath], PROTO_OPTIONS);
const pkg = grpc.loadPackageDefinition(def) as unknown as {
  dnsgeo: { v1: { Enrichment: Ctor } };
  grpc: { health: { v1: { Health: Ctor } } };
};
const reflectionProto = createRequire(import.meta.url).resolve("@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto");
const reflectionPkg = grpc.loadPackageDefinition(protoLoader.loadSync(reflectionProto, PROTO_OPTIONS)) as unknown as {
  grpc: { reflection: { v1: { ServerReflection: Ctor } } };
};

export interface EnrichResponse {
  records: string[];
  counts?: Record<string, number>;
  id?: string;
  looked_up?: number;
}

export type AnyClient = grpc.Client & Record<string, any>;

export function enrichmentClient(address: string, creds = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}): AnyClient {
  return new pkg.dnsgeo.v1.Enrichment(address, creds, options) as AnyClient;
}
export function healthClient(address: string): AnyClient {
  return new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure()) as AnyClient;
}
export function reflectionClient(address: string): AnyClient {
  return new reflectionPkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure()) as AnyClient;
}

/** Promise wrapper of a unary call; rejects with the ServiceError. */
export function unary<T>(client: AnyClient, method: string, req: unknown, metadata = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    (client[method] as (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(client, req, metadata, (e, v) =>
      e ? reject(e) : resolve(v),
    );
  });
}
