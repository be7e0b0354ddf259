using System.Text;
using LlmTools.Engine.Gguf;
using LlmTools.TestModels;

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
            GgufWriter.WriteString(w, k);
            GgufWriter.WriteValue(w, v, true);
        }
        foreach (var t in Tensors)
        {
            GgufWriter.WriteString(w, t.Name);
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
}
