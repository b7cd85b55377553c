// The browser client's public API: bundled by build.sh into dist/trackd.js, whose global
// `trackd` holds these names (see README.md).
export { Code, ConnectError } from "@connectrpc/connect";
export {
  TrackdClient,
  type Attribution,
  type Decision,
  type DecideOption,
  type RuleType,
  type TrackdClientOptions,
} from "./client.js";
export { toValue, toValueMap, type AttributeValue, type Attributes } from "./values.js";
