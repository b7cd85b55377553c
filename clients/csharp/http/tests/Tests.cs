// Unit tests, run by build.sh (no test framework: NuGet is not reachable here). Json against
// the vectors every client shares (clients/testdata/values.json), the answers' JSON read back
// into .NET, and errors. Exits 1 on the first failure.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Trackd.Http;

static class Tests
{
    static void Check(bool ok, string what)
    {
        if (ok) return;
        Console.Error.WriteLine("FAIL: " + what);
        Environment.Exit(1);
    }

    static bool Throws<T>(Action call) where T : Exception
    {
        try { call(); }
        catch (T) { return true; }
        catch (Exception) { return false; }
        return false;
    }

    static void Main(string[] args)
    {
        Dictionary<string, object> vectors;
        Check(Json.TryParseObject(File.ReadAllText(args[0]), out vectors), "values.json parses");
        foreach (Dictionary<string, object> vector in (object[])vectors["values"])
        {
            var name = (string)vector["name"];
            // Parsed into .NET's natural type: a whole JSON number an int or long, a fraction a double.
            var input = vector["input"] is decimal ? (object)Convert.ToDouble(vector["input"]) : vector["input"];
            if (vector.ContainsKey("error"))
            {
                Check(Throws<ArgumentException>(() => Json.ToValue(input)), name + " is refused");
                continue;
            }
            // As JSON, the Value is its value: a JSON number, string, boolean or null.
            var sent = Json.Serialize(Json.ToValueMap(new Dictionary<string, object> { { "v", input } }));
            var expected = Json.Serialize(new Dictionary<string, object> { { "v", ((Dictionary<string, object>)vector["expect"])["value"] } });
            Check(sent == expected, name + ": sent " + sent + ", not " + expected);
        }
        // Native inputs: 2^53+1 is inexact, as everywhere. NaN and infinities, which the gRPC
        // clients pass through for trackd to judge, have no protobuf JSON form: refused.
        Check(Throws<ArgumentException>(() => Json.ToValue(9007199254740993L)), "2^53+1");
        Check(Throws<ArgumentException>(() => Json.ToValue(9007199254740993UL)), "2^53+1 unsigned");
        foreach (var nonFinite in new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity })
            Check(Throws<ArgumentException>(() => Json.ToValue(nonFinite)), nonFinite.ToString());
        Check(Json.Serialize(Json.ToValueMap(null)) == "{}", "no attributes are an empty JSON object");
        Check(Throws<ArgumentException>(() => Json.ToValue(new[] { 1, 2 })), "an array");

        // A decision as Connect's JSON writes it: numbers as doubles, defaults left out.
        Dictionary<string, object> json;
        Json.TryParseObject("{\"flagKey\": \"f\", \"enabled\": true, \"ruleType\": \"RULE_TYPE_ROLLOUT\", \"variables\": "
            + "{\"n\": 7.0, \"x\": 0.5, \"whole\": 2.0, \"s\": \"t\", \"j\": {\"a\": [1.0]}, \"b\": false}}", out json);
        var d = Decision.FromJson(json);
        Check(d.FlagKey == "f" && d.Enabled && d.VariationKey == null && d.RuleType == "rollout" && d.Error == null, "fields");
        Check(d.GetInteger("n") == 7 && d.GetDouble("whole") == 2.0 && d.GetDouble("x") == 0.5, "numbers");
        Check(Json.Serialize(d.GetJson("j")) == "{\"a\":[1]}" && !d.GetBoolean("b") && d.GetString("s") == "t", "others");
        Check(Throws<VariableTypeException>(() => d.GetInteger("s")), "integer getter on a string");
        Check(Throws<VariableTypeException>(() => d.GetJson("n")), "json getter on a number");
        Check(Throws<KeyNotFoundException>(() => d.GetString("missing")), "no such variable");

        // Errors: Connect's own, or the code of an HTTP status a proxy answered with.
        var e = TrackdException.FromResponse(404, "{\"code\": \"not_found\", \"message\": \"event 'x' is not in the datafile\"}");
        Check(e.Code == "not_found" && e.HttpStatus == 404 && e.Message == "not_found: event 'x' is not in the datafile", "a Connect error");
        Check(TrackdException.FromResponse(503, "<html>busy</html>").Code == "unavailable", "a proxy page");
        Console.WriteLine("clients/csharp/http: unit tests passed");
    }
}
