// The browser client's public API: bundled by build.sh into dist/trackd.js, whose global
// `trackd` holds these names (see README.md).
export { Code, ConnectError } from "@connectrpc/connect";
export { TrackdClient, type TrackdClientOptions } from "./client.js";
export type { Attribution } from "../../node/src/attributions";
// The Node client's decision, typed getters included (clients/node/src/decide.ts).
export { Decision, VariableTypeError, type DecideOption, type RuleType } from "../../node/src/decide";
export { toValue, toValueMap, type AttributeValue, type Attributes } from "./values.js";
