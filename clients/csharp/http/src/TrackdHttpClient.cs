using System;
using System.Collections.Generic;
using System.Linq;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Text;
using System.Threading.Tasks;

namespace Trackd.Http
{
    /// <summary>Attributes of a user, as the SDK's OptimizelySDK.Entity.UserAttributes.</summary>
    public class UserAttributes : Dictionary<string, object> { }

    /// <summary>Tags of a conversion event (e.g. "revenue" in cents), as the SDK's EventTags.</summary>
    public class EventTags : Dictionary<string, object> { }

    /// <summary>An experiment a conversion was counted for, as answered by Track.</summary>
    public sealed class Attribution
    {
        public string ExperimentKey { get; set; }
        public string VariationKey { get; set; }
        public string ExperimentId { get; set; }
        public string VariationId { get; set; }
    }

    /// <summary>
    /// A client of trackd's HTTP port (`trackd serve --http-listen`) with the Optimizely SDK's
    /// call shapes, over Connect's JSON: each call is one POST of the request to
    /// /trackd.v1.TrackingService/&lt;Rpc&gt;, answered by the same decisions, activation cache
    /// and outbox as gRPC's. Built on the framework's HttpClient and JavaScriptSerializer only.
    /// A call trackd refuses, or that does not complete within the timeout, throws a
    /// TrackdException carrying Connect's code; values that cannot be sent throw
    /// ArgumentException before any call. Thread-safe: use one per process.
    /// </summary>
    public sealed class TrackdHttpClient : IDisposable
    {
        const string Service = "/trackd.v1.TrackingService/";

        static readonly Dictionary<DecideOption, string> OptionNames = new Dictionary<DecideOption, string>
        {
            { DecideOption.DisableDecisionEvent, "DECIDE_OPTION_DISABLE_DECISION_EVENT" },
            { DecideOption.EnabledFlagsOnly, "DECIDE_OPTION_ENABLED_FLAGS_ONLY" },
            { DecideOption.IgnoreUserProfileService, "DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE" },
            { DecideOption.IncludeReasons, "DECIDE_OPTION_INCLUDE_REASONS" },
            { DecideOption.ExcludeVariables, "DECIDE_OPTION_EXCLUDE_VARIABLES" },
        };

        readonly HttpClient http;
        readonly string baseUrl;
        readonly TimeSpan timeout;

        /// <param name="baseUrl">the HTTP port, e.g. http://127.0.0.1:8080 (https:// with --tls-cert)</param>
        /// <param name="timeout">how long each call may take, connecting included (default 5 s)</param>
        /// <param name="token">a bearer token of trackd's --auth-tokens, sent as `authorization`</param>
        /// <param name="handler">an HttpMessageHandler of your own, e.g. for a private CA</param>
        public TrackdHttpClient(string baseUrl, TimeSpan? timeout = null, string token = null,
            HttpMessageHandler handler = null)
        {
            this.timeout = timeout ?? TimeSpan.FromSeconds(5);
            if (this.timeout <= TimeSpan.Zero)
                throw new ArgumentException("timeout must be positive", nameof(timeout));
            this.baseUrl = baseUrl.TrimEnd('/');
            http = handler == null ? new HttpClient() : new HttpClient(handler);
            http.Timeout = this.timeout;
            if (token != null)
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            // Connect's deadline header: trackd gives up when the caller has.
            http.DefaultRequestHeaders.Add("connect-timeout-ms", ((long)Math.Ceiling(this.timeout.TotalMilliseconds)).ToString());
        }

        /// <summary>
        /// Decides the user's variation and records an impression. Returns the variation key,
        /// or null when the user is in no variation.
        /// </summary>
        public string Activate(string experimentKey, string userId, IDictionary<string, object> attributes = null)
        {
            var reply = Call("Activate", new Dictionary<string, object>
            {
                { "experimentKey", experimentKey }, { "userId", userId },
                { "attributes", Json.ToValueMap(attributes) },
            });
            return Text(reply, "variationKey");
        }

        /// <summary>
        /// Records a conversion event. Returns the experiments it was counted for: those the
        /// user was activated in within trackd's activation TTL.
        /// </summary>
        public IList<Attribution> Track(string eventKey, string userId,
            IDictionary<string, object> attributes = null, IDictionary<string, object> eventTags = null)
        {
            var reply = Call("Track", new Dictionary<string, object>
            {
                { "eventKey", eventKey }, { "userId", userId },
                { "attributes", Json.ToValueMap(attributes) }, { "tags", Json.ToValueMap(eventTags) },
            });
            return Objects(reply, "attributions").Select(a => new Attribution
            {
                ExperimentKey = Text(a, "experimentKey"), VariationKey = Text(a, "variationKey"),
                ExperimentId = Text(a, "experimentId"), VariationId = Text(a, "variationId"),
            }).ToList();
        }

        /// <summary>
        /// Decides flags as the SDK's DecideForKeys (the flags named, in that order; an unknown
        /// key gets a Decision with Error set) or, with no keys, DecideAll (every flag, in the
        /// datafile's order). EnabledFlagsOnly leaves out disabled flags.
        /// </summary>
        public IList<Decision> Decide(string userId, IDictionary<string, object> attributes = null,
            IEnumerable<string> flagKeys = null, IEnumerable<DecideOption> options = null)
        {
            var reply = Call("Decide", new Dictionary<string, object>
            {
                { "userId", userId }, { "attributes", Json.ToValueMap(attributes) },
                { "flagKeys", (flagKeys ?? new string[0]).ToArray() },
                { "options", (options ?? new DecideOption[0]).Select(o => OptionNames[o]).ToArray() },
            });
            return Objects(reply, "decisions").Select(Decision.FromJson).ToList();
        }

        /// <summary>Forces the flag's variation for the user: for one rule with ruleKey, else the whole flag.</summary>
        public void SetForcedDecision(string userId, string flagKey, string variationKey, string ruleKey = "")
        {
            Call("SetForcedDecision", new Dictionary<string, object>
            {
                { "userId", userId }, { "flagKey", flagKey }, { "ruleKey", ruleKey }, { "variationKey", variationKey },
            });
        }

        /// <summary>The variation key forced for the flag (or rule), null when none is.</summary>
        public string GetForcedDecision(string userId, string flagKey, string ruleKey = "")
        {
            return Text(Call("GetForcedDecision", ForcedKey(userId, flagKey, ruleKey)), "variationKey");
        }

        /// <summary>Removes one forced decision; true when there was one.</summary>
        public bool RemoveForcedDecision(string userId, string flagKey, string ruleKey = "")
        {
            var reply = Call("RemoveForcedDecision", ForcedKey(userId, flagKey, ruleKey));
            return reply.TryGetValue("removed", out var removed) && (bool)removed;
        }

        /// <summary>Removes every forced decision of the user; returns how many there were.</summary>
        public int RemoveAllForcedDecisions(string userId)
        {
            var reply = Call("RemoveAllForcedDecisions", new Dictionary<string, object> { { "userId", userId } });
            return reply.TryGetValue("removed", out var removed) ? Convert.ToInt32(removed) : 0;
        }

        /// <summary>
        /// The live datafile as trackd describes it: GetConfigResponse's JSON (revision,
        /// loadedAt, experiments, events, attributes, flags) as dictionaries and arrays.
        /// </summary>
        public Dictionary<string, object> GetConfig() => Call("GetConfig", new Dictionary<string, object>());

        /// <summary>
        /// Any unary RPC of TrackingService, by name, its request as protobuf JSON fields: the
        /// answer, parsed. For the RPCs the methods above do not wrap.
        /// </summary>
        public Dictionary<string, object> Call(string rpc, Dictionary<string, object> request)
        {
            var body = new StringContent(Json.Serialize(request), Encoding.UTF8);
            body.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            HttpResponseMessage response;
            string text;
            try
            {
                response = http.PostAsync(baseUrl + Service + rpc, body).ConfigureAwait(false).GetAwaiter().GetResult();
                text = response.Content.ReadAsStringAsync().ConfigureAwait(false).GetAwaiter().GetResult();
            }
            catch (TaskCanceledException e) // HttpClient's way of saying its Timeout passed
            {
                throw new TrackdException(TrackdException.DeadlineExceeded, "no answer within " + timeout, 0, e);
            }
            catch (HttpRequestException e)
            {
                throw new TrackdException(TrackdException.Unavailable, e.InnerException?.Message ?? e.Message, 0, e);
            }
            var status = (int)response.StatusCode;
            if (status != 200)
                throw TrackdException.FromResponse(status, text);
            if (!Json.TryParseObject(text, out var reply))
                throw new TrackdException("internal", "the answer is not a JSON object", status);
            return reply;
        }

        public void Dispose() => http.Dispose();

        static Dictionary<string, object> ForcedKey(string userId, string flagKey, string ruleKey) =>
            new Dictionary<string, object> { { "userId", userId }, { "flagKey", flagKey }, { "ruleKey", ruleKey } };

        static string Text(Dictionary<string, object> json, string field) =>
            json.TryGetValue(field, out var value) && (string)value != "" ? (string)value : null;

        static IEnumerable<Dictionary<string, object>> Objects(Dictionary<string, object> json, string field) =>
            json.TryGetValue(field, out var list) ? ((object[])list).Cast<Dictionary<string, object>>() : Enumerable.Empty<Dictionary<string, object>>();
    }
}
