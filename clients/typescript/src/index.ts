// agentok's TypeScript client: AgentokClient over gRPC-web, AgentokError, and the generated messages.
export { AgentokClient, type AgentokClientOptions, type WatchOptions } from "./client.js";
export { AgentokError, toAgentokError, type FieldViolation } from "./errors.js";
export { Code } from "@connectrpc/connect";
export * from "./gen/agentok/v1/api_key_pb.js";
export * from "./gen/agentok/v1/chat_enums_pb.js";
export * from "./gen/agentok/v1/chat_pb.js";
export * from "./gen/agentok/v1/flow_pb.js";
export * from "./gen/agentok/v1/tool_pb.js";
export type * from "./gen/agentok/v1/api_key_service_pb.js";
export type * from "./gen/agentok/v1/chat_service_pb.js";
export type * from "./gen/agentok/v1/flow_service_pb.js";
export type * from "./gen/agentok/v1/tool_service_pb.js";
