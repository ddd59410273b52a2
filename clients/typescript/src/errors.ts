// One error type for every failed call: the gRPC code and the ErrorInfo reason the service (or its edge) gave.
import { fromBinary } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";

/** A field the request got wrong (google.rpc.BadRequest). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** A failed call: `code` is the gRPC status code (connect's Code, the same numbers), `reason` the ErrorInfo's. */
export class AgentokError extends Error {
  override readonly name = "AgentokError";

  constructor(
    /** The gRPC status code, e.g. Code.NotFound (5). */
    readonly code: Code,
    /** The service's words, as it said them. */
    readonly rawMessage: string,
    /** ErrorInfo.reason, e.g. CHAT_NOT_FOUND; "" when the failure carried none (a dropped connection). */
    readonly reason: string,
    /** ErrorInfo.domain (agentok.ai for the service's and its edge's own errors). */
    readonly domain: string,
    /** ErrorInfo.metadata: the ids or limits involved. */
    readonly metadata: Record<string, string>,
    readonly fieldViolations: FieldViolation[],
    /** How long the service asks to wait before retrying (RetryInfo), in milliseconds. */
    readonly retryAfterMs: number | undefined,
    /** Envoy's x-request-id of the call, to quote when asking about it. */
    readonly requestId: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(rawMessage, options);
  }

  /** The code's gRPC name, e.g. NOT_FOUND. */
  get codeName(): string {
    return Code[this.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  }
}

/** Any error a call threw, as an AgentokError (one already is stays as it is). */
export function toAgentokError(err: unknown): AgentokError {
  if (err instanceof AgentokError) return err;
  const connect = ConnectError.from(err);
  // The status itself when the reply carried one (grpc-status-details-bin): trailers, or the headers of a
  // trailers-only reply. The key check's refusals keep their HTTP code (401), from which connect would derive
  // the code; the status in the headers is the service's own word.
  let code = connect.code;
  let message = connect.rawMessage;
  const headerStatus = connect.metadata.get("grpc-status");
  if (headerStatus !== null && /^\d+$/.test(headerStatus)) code = Number(headerStatus) as Code;
  const details = connect.metadata.get("grpc-status-details-bin");
  let reason = "";
  let domain = "";
  let metadata: Record<string, string> = {};
  const violations: FieldViolation[] = [];
  let retryAfterMs: number | undefined;
  if (details) {
    try {
      const status = fromBinary(StatusSchema, base64Decode(details));
      code = status.code as Code;
      message = status.message || message;
      for (const any of status.details) {
        const info = anyUnpack(any, ErrorInfoSchema);
        if (info) {
          ({ reason, domain } = info);
          metadata = { ...info.metadata };
        }
        const bad = anyUnpack(any, BadRequestSchema);
        if (bad) violations.push(...bad.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
        const retry = anyUnpack(any, RetryInfoSchema);
        if (retry?.retryDelay) {
          retryAfterMs = Number(retry.retryDelay.seconds) * 1000 + retry.retryDelay.nanos / 1e6;
        }
      }
    } catch {
      // Not a status after all: the code and message connect read stand.
    }
  }
  const requestId = connect.metadata.get("x-request-id") ?? undefined;
  return new AgentokError(code, message, reason, domain, metadata, violations, retryAfterMs, requestId, {
    cause: err,
  });
}
