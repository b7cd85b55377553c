using System;
using System.Collections.Generic;
using System.Linq;

namespace Trackd.Http
{
    /// <summary>What changes a Decide call, as the SDK's OptimizelyDecideOption.</summary>
    public enum DecideOption
    {
        DisableDecisionEvent,
        EnabledFlagsOnly,
        IgnoreUserProfileService,
        IncludeReasons,
        ExcludeVariables,
    }

    /// <summary>
    /// One flag's decision, as the SDK's OptimizelyDecision. VariationKey and RuleKey are null
    /// when none was decided; RuleType is "experiment", "feature-test", "rollout", "holdout" or
    /// null. Error is set (and Enabled false) when the flag could not be decided, e.g. an
    /// unknown flag key.
    /// </summary>
    public sealed class Decision
    {
        static readonly Dictionary<string, string> RuleTypes = new Dictionary<string, string>
        {
            { "RULE_TYPE_EXPERIMENT", "experiment" }, { "RULE_TYPE_FEATURE_TEST", "feature-test" },
            { "RULE_TYPE_ROLLOUT", "rollout" }, { "RULE_TYPE_HOLDOUT", "holdout" },
        };

        public string FlagKey { get; private set; }
        public bool Enabled { get; private set; }
        public string VariationKey { get; private set; }
        public string RuleKey { get; private set; }
        public string RuleType { get; private set; }
        /// <summary>The variables as plain .NET values: whole numbers as long, json ones as dictionaries.</summary>
        public IReadOnlyDictionary<string, object> Variables { get; private set; }
        public IReadOnlyList<string> Reasons { get; private set; }
        public bool ImpressionRecorded { get; private set; }
        public string Error { get; private set; }

        /// <summary>A FlagDecision as Connect's JSON writes it: fields at their default are left out.</summary>
        public static Decision FromJson(Dictionary<string, object> json)
        {
            string ruleType;
            RuleTypes.TryGetValue(Text(json, "ruleType") ?? "", out ruleType);
            return new Decision
            {
                FlagKey = Text(json, "flagKey"),
                Enabled = json.TryGetValue("enabled", out var enabled) && (bool)enabled,
                VariationKey = Text(json, "variationKey"),
                RuleKey = Text(json, "ruleKey"),
                RuleType = ruleType,
                Variables = json.TryGetValue("variables", out var variables)
                    ? (Dictionary<string, object>)Json.FromValue(variables)
                    : new Dictionary<string, object>(),
                Reasons = json.TryGetValue("reasons", out var reasons)
                    ? ((object[])reasons).Cast<string>().ToList()
                    : new List<string>(),
                ImpressionRecorded = json.TryGetValue("impressionRecorded", out var recorded) && (bool)recorded,
                Error = Text(json, "error"),
            };
        }

        static string Text(Dictionary<string, object> json, string field)
        {
            return json.TryGetValue(field, out var value) && (string)value != "" ? (string)value : null;
        }

        public bool GetBoolean(string key) => Typed<bool>(key, "boolean", v => v is bool);

        public long GetInteger(string key) => Typed<long>(key, "integer", v => v is long);

        /// <summary>A double with a whole value arrives as a whole number: it comes back a double.</summary>
        public double GetDouble(string key) => Convert.ToDouble(Typed<object>(key, "double", v => v is long || v is double));

        public string GetString(string key) => Typed<string>(key, "string", v => v is string);

        public IDictionary<string, object> GetJson(string key) =>
            Typed<Dictionary<string, object>>(key, "json", v => v is Dictionary<string, object>);

        T Typed<T>(string key, string wanted, Func<object, bool> isWanted)
        {
            if (!Variables.TryGetValue(key, out var value))
                throw new KeyNotFoundException("flag '" + FlagKey + "' has no variable '" + key + "'");
            if (!isWanted(value))
                throw new VariableTypeException(
                    "flag '" + FlagKey + "': variable '" + key + "' is " + Json.Serialize(value) + ", not " + wanted);
            return (T)value;
        }
    }
}
