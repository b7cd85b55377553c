using System;
using System.Collections.Generic;

namespace Trackd.Http
{
    /// <summary>
    /// A call trackd refused or that did not complete: Connect's error code (the gRPC status
    /// trackd would give, in snake case: "not_found", "invalid_argument", ...) and message.
    /// </summary>
    public class TrackdException : Exception
    {
        public const string NotFound = "not_found";
        public const string InvalidArgument = "invalid_argument";
        public const string ResourceExhausted = "resource_exhausted";
        public const string Unauthenticated = "unauthenticated";
        public const string PermissionDenied = "permission_denied";
        public const string DeadlineExceeded = "deadline_exceeded";
        public const string Unavailable = "unavailable";

        // Connect's code for an HTTP status whose body is not a Connect error (a proxy's page):
        // the table of https://connectrpc.com/docs/protocol/#http-to-error-code
        static readonly Dictionary<int, string> ByHttpStatus = new Dictionary<int, string>
        {
            { 400, "internal" }, { 401, Unauthenticated }, { 403, PermissionDenied },
            { 404, "unimplemented" }, { 429, Unavailable }, { 502, Unavailable },
            { 503, Unavailable }, { 504, Unavailable },
        };

        /// <summary>Connect's code, e.g. "not_found" (the constants of this class).</summary>
        public string Code { get; }

        /// <summary>The HTTP status of the answer; 0 when none arrived.</summary>
        public int HttpStatus { get; }

        public TrackdException(string code, string message, int httpStatus = 0, Exception inner = null)
            : base(code + ": " + message, inner)
        {
            Code = code;
            HttpStatus = httpStatus;
        }

        /// <summary>The error of an HTTP answer that is not a success.</summary>
        public static TrackdException FromResponse(int httpStatus, string body)
        {
            object code = null, message = null;
            if (Json.TryParseObject(body, out var error)
                && error.TryGetValue("code", out code) && code is string)
            {
                error.TryGetValue("message", out message);
                return new TrackdException((string)code, message as string ?? "", httpStatus);
            }
            string mapped;
            return new TrackdException(
                ByHttpStatus.TryGetValue(httpStatus, out mapped) ? mapped : "unknown",
                "HTTP " + httpStatus, httpStatus);
        }
    }

    /// <summary>A flag variable was read with a getter of another type than its own.</summary>
    public class VariableTypeException : InvalidCastException
    {
        public VariableTypeException(string message) : base(message) { }
    }
}
