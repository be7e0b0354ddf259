using System.Text;
using LlmTools.Engine.Gguf;

namespace LlmTools.Fuzz;

/// <summary>A GGUF file as editable parts: metadata in order, tensor descriptions, and the raw tensor data section.</summary>
public sealed class GgufImage
{
    public List<(string Key, object Value)> Metadata { get; } = [];
    public List<GgufTensorInfo> Tensors { get; } = [];
    public byte[] Data { get; set; } = [];
    public uint Version { get; set; } = 3;

    public static GgufImage Load(string path)
    {
        var f = GgufFile.Read(path);
        var image = new GgufImage { Version = f.Version };
        foreach (var (k, v) in f.Metadata) image.Metadata.Add((k, v));
        image.Tensors.AddRange(f.Tensors);
        var all = File.ReadAllBytes(path);
        image.Data = all.AsSpan((int)Math.Min(f.DataOffset, all.Length)).ToArray();
        return image;
    }

    public object? Get(string key) => Metadata.FirstOrDefault(m => m.Key == key).Value;

    public void Set(string key, object? value)
    {
        int i = Metadata.FindIndex(m => m.Key == key);
        if (value is null) { if (i >= 0) Metadata.RemoveAt(i); return; }
        if (i >= 0) Metadata[i] = (key, value);
        else Metadata.Add((key, value));
    }

    public uint Alignment => Get("general.alignment") is uint a && a != 0 && (a & (a - 1)) == 0 ? a : 32;

    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        var w = new BinaryWriter(ms, Encoding.UTF8);
        w.Write(0x46554747u);
        w.Write(Version);
        w.Write((ulong)Tensors.Count);
        w.Write((ulong)Metadata.Count);
        foreach (var (k, v) in Metadata)
        {
            WriteString(w, k);
            WriteValue(w, v, true);
        }
        foreach (var t in Tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dimensions.Length);
            foreach (var d in t.Dimensions) w.Write(d);
            w.Write(t.Type);
            w.Write(t.Offset);
        }
        long pad = (Alignment - ms.Position % Alignment) % Alignment;
        for (long i = 0; i < pad; i++) w.Write((byte)0);
        w.Write(Data);
        w.Flush();
        return ms.ToArray();
    }

    // Strings from GgufFile keep invalid UTF-8 bytes as U+DC80..U+DCFF; they are written back as those bytes.
    private static byte[] Bytes(string s)
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
        return bytes.ToArray();
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Bytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    public static uint TypeOf(Type t) =>
        t == typeof(byte) ? 0u : t == typeof(sbyte) ? 1u : t == typeof(ushort) ? 2u : t == typeof(short) ? 3u :
        t == typeof(uint) ? 4u : t == typeof(int) ? 5u : t == typeof(float) ? 6u : t == typeof(bool) ? 7u :
        t == typeof(string) ? 8u : t.IsArray ? 9u : t == typeof(ulong) ? 10u : t == typeof(long) ? 11u :
        t == typeof(double) ? 12u : throw new ArgumentException($"no GGUF type for {t}");

    private static void WriteValue(BinaryWriter w, object v, bool withType)
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
