using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Web.Script.Serialization;

namespace Trackd.Http
{
    /// <summary>
    /// JSON with the framework's own serializer (no NuGet), and attribute and tag values to and
    /// from google.protobuf.Value, the type of trackd's attributes, tags and flag variables.
    /// Checked against clients/testdata/values.json, the vectors every client shares.
    /// </summary>
    public static class Json
    {
        /// <summary>Integers beyond this are not exact as a double, the only number a Value holds.</summary>
        public const long MaxExactInteger = 1L << 53;

        static readonly JavaScriptSerializer Serializer = new JavaScriptSerializer { MaxJsonLength = int.MaxValue };

        public static string Serialize(object value) => Serializer.Serialize(value);

        public static bool TryParseObject(string text, out Dictionary<string, object> parsed)
        {
            try
            {
                parsed = Serializer.DeserializeObject(text) as Dictionary<string, object>;
            }
            catch (ArgumentException)
            {
                parsed = null;
            }
            return parsed != null;
        }

        /// <summary>
        /// Attributes or tags as the JSON object of a map of Values. null, bool, string, char,
        /// enums (by name), integers (|x| &lt;= 2^53), finite float, double and decimal pass;
        /// anything else is an ArgumentException before any call.
        /// </summary>
        public static Dictionary<string, object> ToValueMap(IDictionary<string, object> map)
        {
            var values = new Dictionary<string, object>();
            if (map != null)
            {
                foreach (var entry in map)
                    values[entry.Key] = ToValue(entry.Value);
            }
            return values;
        }

        public static object ToValue(object value)
        {
            if (value == null || value is bool || value is string || value is decimal)
                return value;
            if (value is char || value is Enum)
                return value.ToString();
            if (value is sbyte || value is byte || value is short || value is ushort || value is int || value is uint)
                return Convert.ToInt64(value);
            if (value is long || value is ulong)
            {
                var exact = value is long ? Math.Abs((decimal)(long)value) <= MaxExactInteger : (ulong)value <= (ulong)MaxExactInteger;
                if (!exact)
                    throw new ArgumentException("integer " + value + " is not exact as a double (|x| > 2^53)");
                return Convert.ToInt64(value);
            }
            // The gRPC clients pass NaN and infinities through for trackd to judge; protobuf's
            // JSON has no way to write them in a Value, so over Connect JSON they cannot be sent.
            if (value is float || value is double)
            {
                var d = Convert.ToDouble(value);
                if (double.IsNaN(d) || double.IsInfinity(d))
                    throw new ArgumentException(d + " cannot be sent as JSON");
                return d;
            }
            throw new ArgumentException(
                "attribute and tag values are null, bool, string, numbers or enums, not " + value.GetType());
        }

        /// <summary>
        /// A Value as the serializer parsed it, as plain .NET: whole numbers come back as long
        /// (a Value number is a double, so trackd writes 7 as 7.0), others as double, lists as
        /// List&lt;object&gt;, objects as Dictionary&lt;string, object&gt;.
        /// </summary>
        public static object FromValue(object value)
        {
            if (value is int)
                return (long)(int)value;
            if (value is long)
                return value;
            if (value is decimal || value is double)
            {
                var d = Convert.ToDouble(value);
                return d == Math.Truncate(d) && Math.Abs(d) <= MaxExactInteger ? (object)(long)d : d;
            }
            var map = value as Dictionary<string, object>;
            if (map != null)
                return map.ToDictionary(e => e.Key, e => FromValue(e.Value));
            var list = value as object[];
            if (list != null)
                return list.Select(FromValue).ToList();
            return value;
        }
    }
}
