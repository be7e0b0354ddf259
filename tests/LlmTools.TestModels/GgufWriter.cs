using System.Text;

namespace LlmTools.TestModels;

/// <summary>A minimal GGUF (version 3) writer: metadata, then F32/F16/Q8_0 tensors, aligned as llama.cpp expects.</summary>
public sealed class GgufWriter
{
    public const int Alignment = 32;
    private readonly List<(string Key, object Value)> _metadata = [];
    private readonly List<(string Name, ulong[] Dims, uint Type, byte[] Data)> _tensors = [];

    public GgufWriter Set(string key, object value)
    {
        _metadata.RemoveAll(kv => kv.Key == key);
        _metadata.Add((key, value));
        return this;
    }

    public GgufWriter Remove(string key)
    {
        _metadata.RemoveAll(kv => kv.Key == key);
        return this;
    }

    /// <summary>Adds an F32 tensor; dims are ggml's order (the first is the row length).</summary>
    public GgufWriter AddF32(string name, ulong[] dims, float[] values)
    {
        var data = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, data, 0, data.Length);
        _tensors.Add((name, dims, 0, data));
        return this;
    }

    /// <summary>Adds a Q8_0 tensor (blocks of 32 values: one F16 scale and 32 signed bytes).</summary>
    public GgufWriter AddQ8_0(string name, ulong[] dims, float[] values)
    {
        if (values.Length % 32 != 0) throw new ArgumentException("Q8_0 needs whole blocks of 32 values");
        var data = new byte[values.Length / 32 * 34];
        for (int b = 0; b < values.Length / 32; b++)
        {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = Math.Max(amax, Math.Abs(values[b * 32 + i]));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            BitConverter.TryWriteBytes(data.AsSpan(b * 34, 2), (Half)d);
            for (int i = 0; i < 32; i++)
                data[b * 34 + 2 + i] = unchecked((byte)(sbyte)Math.Round(values[b * 32 + i] * id));
        }
        _tensors.Add((name, dims, 8, data));
        return this;
    }

    public void Write(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(0x46554747u);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, value) in _metadata)
        {
            WriteString(w, key);
            WriteValue(w, value, withType: true);
        }
        ulong offset = 0;
        foreach (var (name, dims, type, data) in _tensors)
        {
            WriteString(w, name);
            w.Write((uint)dims.Length);
            foreach (var d in dims) w.Write(d);
            w.Write(type);
            w.Write(offset);
            offset = Align(offset + (ulong)data.Length);
        }
        Pad(w);
        long dataStart = stream.Position;
        foreach (var (_, _, _, data) in _tensors)
        {
            w.Write(data);
            Pad(w, dataStart);
        }
    }

    private static ulong Align(ulong x) => (x + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w, long origin = 0)
    {
        long pos = w.BaseStream.Position - origin;
        long pad = (Alignment - pos % Alignment) % Alignment;
        for (long i = 0; i < pad; i++) w.Write((byte)0);
    }

    /// <summary>
    /// Writes a GGUF string. Strings read by the engine's GgufFile keep invalid UTF-8 bytes as U+DC80..U+DCFF: those are
    /// written back as the bytes they stand for, so a file read and written again is byte-identical (the fuzzer needs it).
    /// </summary>
    public static void WriteString(BinaryWriter w, string s)
    {
        var bytes = new List<byte>(s.Length);
        Span<byte> buf = stackalloc byte[4];
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c is >= '\uDC80' and <= '\uDCFF') { bytes.Add((byte)(c - 0xDC00)); continue; }
            int len = char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])
                ? Encoding.UTF8.GetBytes(s.AsSpan(i++, 2), buf)
                : Encoding.UTF8.GetBytes(s.AsSpan(i, 1), buf);
            for (int j = 0; j < len; j++) bytes.Add(buf[j]);
        }
        w.Write((ulong)bytes.Count);
        w.Write(bytes.ToArray());
    }

    /// <summary>The GGUF value type of a .NET type.</summary>
    public static uint TypeOf(Type t) =>
        t == typeof(byte) ? 0u : t == typeof(sbyte) ? 1u : t == typeof(ushort) ? 2u : t == typeof(short) ? 3u :
        t == typeof(uint) ? 4u : t == typeof(int) ? 5u : t == typeof(float) ? 6u : t == typeof(bool) ? 7u :
        t == typeof(string) ? 8u : t.IsArray ? 9u : t == typeof(ulong) ? 10u : t == typeof(long) ? 11u :
        t == typeof(double) ? 12u : throw new ArgumentException($"unsupported GGUF value {t}");

    /// <summary>Writes a metadata value (with its type first when <paramref name="withType"/>; array elements without).</summary>
    public static void WriteValue(BinaryWriter w, object v, bool withType)
    {
        if (withType) w.Write(TypeOf(v.GetType()));
        switch (v)
        {
            case byte b: w.Write(b); break;
            case sbyte sb: w.Write(sb); break;
            case ushort us: w.Write(us); break;
            case short s: w.Write(s); break;
            case uint ui: w.Write(ui); break;
            case int i: w.Write(i); break;
            case float f: w.Write(f); break;
            case bool bo: w.Write(bo ? (byte)1 : (byte)0); break;
            case string str: WriteString(w, str); break;
            case ulong ul: w.Write(ul); break;
            case long l: w.Write(l); break;
            case double d: w.Write(d); break;
            case Array a:
                w.Write(TypeOf(a.GetType().GetElementType()!));
                w.Write((ulong)a.Length);
                foreach (var e in a) WriteValue(w, e!, withType: false);
                break;
        }
    }
}
