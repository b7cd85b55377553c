using System.Collections;
using Google.Protobuf.Collections;
using Google.Protobuf.WellKnownTypes;

namespace Trackd.Client;

/// <summary>
/// Converts plain .NET values to <see cref="Value"/>, the type of trackd's attributes and tags:
/// null, bool, string, char, enums (by name), integers, floating-point and decimal numbers.
/// Lists and string-keyed dictionaries become list and struct values: valid protobuf, though
/// trackd rejects them as attributes.
/// </summary>
public static class ValueConverter
{
    /// <summary>Integers beyond this are not exact as a double, the only number a Value holds.</summary>
    public const long MaxExactInteger = 1L << 53;

    /// <summary>Converts one value.</summary>
    /// <exception cref="ArgumentException">The type is not supported, or an integer has |x| &gt; 2^53.</exception>
    public static Value ToValue(object? value) => value switch
    {
        null => Value.ForNull(),
        Value v => v,
        bool b => Value.ForBool(b),
        string s => Value.ForString(s),
        char c => Value.ForString(c.ToString()),
        System.Enum e => Value.ForString(e.ToString()),
        sbyte or byte or short or ushort or int or uint => Value.ForNumber(Convert.ToDouble(value)),
        long l when l is >= -MaxExactInteger and <= MaxExactInteger => Value.ForNumber(l),
        ulong u when u <= MaxExactInteger => Value.ForNumber(u),
        long or ulong => throw new ArgumentException($"integer {value} is not exact as a double (|x| > 2^53)", nameof(value)),
        float f => Value.ForNumber(f),
        double d => Value.ForNumber(d),
        decimal m => Value.ForNumber((double)m),
        IDictionary dict => Value.ForStruct(ToStruct(dict)),
        IEnumerable list => Value.ForList(list.Cast<object?>().Select(ToValue).ToArray()),
        _ => throw new ArgumentException($"cannot convert {value.GetType()} to google.protobuf.Value", nameof(value)),
    };

    /// <summary>Copies a dictionary of attributes or tags into a request's map; null adds nothing.</summary>
    /// <exception cref="ArgumentException">A value cannot be converted.</exception>
    public static void CopyTo(IReadOnlyDictionary<string, object?>? values, MapField<string, Value> map)
    {
        ArgumentNullException.ThrowIfNull(map);
        if (values is null)
        {
            return;
        }
        foreach (var (key, value) in values)
        {
            map[key] = ToValue(value);
        }
    }

    private static Struct ToStruct(IDictionary dict)
    {
        var result = new Struct();
        foreach (DictionaryEntry entry in dict)
        {
            if (entry.Key is not string key)
            {
                throw new ArgumentException($"struct keys must be strings, not {entry.Key.GetType()}", nameof(dict));
            }
            result.Fields[key] = ToValue(entry.Value);
        }
        return result;
    }
}
