using System.Text;

namespace LlmTools.Engine.Gguf;

/// <summary>One tensor's description from a GGUF header.</summary>
public sealed record GgufTensorInfo(string Name, ulong[] Dimensions, uint Type, ulong Offset)
{
    public ulong ElementCount
    {
        get
        {
            ulong n = 1;
            foreach (var d in Dimensions) n = checked(n * d);
            return n;
        }
    }

    public string TypeName => GgmlTypes.Name(Type);
}

/// <summary>
/// The header of a GGUF file, read by managed code without touching native llama.cpp: metadata and tensor
/// descriptions. Array values are kept as typed arrays (string[], float[], int[], ...).
/// </summary>
public sealed class GgufFile
{
    private const uint Magic = 0x46554747; // "GGUF" little-endian
    private const int MaxDimensions = 4;    // GGML_MAX_DIMS

    public required string Path { get; init; }
    public required uint Version { get; init; }
    public required long FileSize { get; init; }
    public required IReadOnlyDictionary<string, object> Metadata { get; init; }
    public required IReadOnlyList<GgufTensorInfo> Tensors { get; init; }
    public required long DataOffset { get; init; }
    public required uint Alignment { get; init; }

    public string? GetString(string key) => Metadata.TryGetValue(key, out var v) ? v as string : null;

    public long? GetInteger(string key) => Metadata.TryGetValue(key, out var v) ? v switch
    {
        byte b => b, sbyte sb => sb, ushort us => us, short s => s, uint ui => ui, int i => i,
        ulong ul => ul > long.MaxValue ? long.MaxValue : (long)ul, long l => l, bool bo => bo ? 1 : 0,
        _ => null,
    } : null;

    public double? GetFloat(string key) => Metadata.TryGetValue(key, out var v) ? v switch
    {
        float f => f, double d => d, _ => GetInteger(key),
    } : null;

    public bool? GetBool(string key) => Metadata.TryGetValue(key, out var v) && v is bool b ? b : null;

    public Array? GetArray(string key) => Metadata.TryGetValue(key, out var v) ? v as Array : null;

    /// <summary>Reads and checks the header. Throws <see cref="LlmException"/> with a stable id on any problem.</summary>
    public static GgufFile Read(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new LlmException("ModelFileNotFound", LlmErrorKind.ObjectNotFound, $"Model file '{path}' does not exist.", path, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new LlmException("ModelFileUnreadable", LlmErrorKind.ResourceUnavailable, $"Model file '{path}' cannot be read: {e.Message}", path, e);
        }

        using (stream)
        {
            try
            {
                return new Parser(stream, path).Parse();
            }
            catch (EndOfStreamException e)
            {
                throw Corrupt(path, "the header ends before its declared contents (the file is truncated)", e);
            }
            catch (OverflowException e)
            {
                throw Corrupt(path, "a size in the header overflows", e);
            }
        }
    }

    internal static LlmException Corrupt(string path, string why, Exception? inner = null) =>
        new("InvalidGgufFile", LlmErrorKind.InvalidData,
            $"'{path}' is not a valid GGUF model file: {why}. Download it again or choose another file.", path, inner);

    private sealed class Parser(FileStream stream, string path)
    {
        private readonly BinaryReader _reader = new(stream, Encoding.UTF8, leaveOpen: true);
        private readonly long _length = stream.Length;

        private long Remaining => _length - stream.Position;

        public GgufFile Parse()
        {
            if (_length < 24)
                throw NotGguf("it is too short to hold a GGUF header");
            uint magic = _reader.ReadUInt32();
            if (magic != Magic)
                throw NotGguf("it does not start with the GGUF signature");
            uint version = _reader.ReadUInt32();
            if (version is < 2 or > 3)
                throw Corrupt(path, version == 1
                    ? "it uses GGUF version 1, which llama.cpp no longer reads; convert it again with a current llama.cpp"
                    : $"it declares GGUF version {version}, which this module does not know");
            ulong tensorCount = _reader.ReadUInt64();
            ulong kvCount = _reader.ReadUInt64();
            // Every key/value takes at least 12 bytes and every tensor info at least 24: refuse counts the file cannot hold.
            if (kvCount > (ulong)Remaining / 12 || tensorCount > (ulong)Remaining / 24)
                throw Corrupt(path, $"its header declares {kvCount} metadata entries and {tensorCount} tensors, more than the file can hold (the file is truncated or corrupted)");

            var metadata = new Dictionary<string, object>((int)kvCount, StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                string key = ReadString();
                uint type = _reader.ReadUInt32();
                object value = ReadValue(type, key);
                if (!metadata.TryAdd(key, value))
                    throw Corrupt(path, $"metadata key '{key}' appears twice");
            }

            var tensors = new List<GgufTensorInfo>((int)tensorCount);
            for (ulong i = 0; i < tensorCount; i++)
            {
                string name = ReadString();
                uint nDims = _reader.ReadUInt32();
                if (nDims is 0 or > MaxDimensions)
                    throw Corrupt(path, $"tensor '{name}' has {nDims} dimensions (1 to {MaxDimensions} allowed)");
                var dims = new ulong[nDims];
                for (int d = 0; d < nDims; d++)
                {
                    dims[d] = _reader.ReadUInt64();
                    if (dims[d] == 0 || dims[d] > long.MaxValue)
                        throw Corrupt(path, $"tensor '{name}' has an invalid dimension {dims[d]}");
                }
                uint type = _reader.ReadUInt32();
                ulong offset = _reader.ReadUInt64();
                tensors.Add(new GgufTensorInfo(name, dims, type, offset));
            }

            uint alignment = 32;
            if (metadata.TryGetValue("general.alignment", out var a))
            {
                if (a is not uint au || au == 0 || (au & (au - 1)) != 0)
                    throw Corrupt(path, "general.alignment is not a power of two");
                alignment = au;
            }
            long dataOffset = (stream.Position + alignment - 1) / alignment * alignment;

            return new GgufFile
            {
                Path = path,
                Version = version,
                FileSize = _length,
                Metadata = metadata,
                Tensors = tensors,
                DataOffset = dataOffset,
                Alignment = alignment,
            };
        }

        private LlmException NotGguf(string why) =>
            new("NotGgufFile", LlmErrorKind.InvalidData,
                $"'{path}' is not a GGUF model file: {why}. LlmTools runs llama.cpp models in GGUF format (*.gguf).", path);

        private string ReadString()
        {
            ulong len = _reader.ReadUInt64();
            if (len > (ulong)Remaining)
                throw Corrupt(path, $"a string of {len} bytes runs past the end of the file (the file is truncated or corrupted)");
            var bytes = _reader.ReadBytes((int)len);
            return Encoding.UTF8.GetString(bytes);
        }

        private object ReadValue(uint type, string key) => type switch
        {
            0 => _reader.ReadByte(),
            1 => _reader.ReadSByte(),
            2 => _reader.ReadUInt16(),
            3 => _reader.ReadInt16(),
            4 => _reader.ReadUInt32(),
            5 => _reader.ReadInt32(),
            6 => _reader.ReadSingle(),
            7 => _reader.ReadByte() switch
            {
                0 => false,
                1 => true,
                var b => throw Corrupt(path, $"metadata '{key}' holds the boolean byte {b}"),
            },
            8 => ReadString(),
            9 => ReadArray(key),
            10 => _reader.ReadUInt64(),
            11 => _reader.ReadInt64(),
            12 => _reader.ReadDouble(),
            _ => throw Corrupt(path, $"metadata '{key}' has unknown value type {type}"),
        };

        private Array ReadArray(string key)
        {
            uint elementType = _reader.ReadUInt32();
            ulong count = _reader.ReadUInt64();
            int minSize = elementType switch { 0 or 1 or 7 => 1, 2 or 3 => 2, 4 or 5 or 6 => 4, 8 or 10 or 11 or 12 => 8, _ => 12 };
            if (count > (ulong)Remaining / (ulong)minSize)
                throw Corrupt(path, $"metadata array '{key}' declares {count} elements, more than the file can hold (the file is truncated or corrupted)");
            int n = (int)count;
            switch (elementType)
            {
                case 4:
                {
                    var r = new uint[n];
                    for (int i = 0; i < n; i++) r[i] = _reader.ReadUInt32();
                    return r;
                }
                case 5:
                {
                    var r = new int[n];
                    for (int i = 0; i < n; i++) r[i] = _reader.ReadInt32();
                    return r;
                }
                case 6:
                {
                    var r = new float[n];
                    for (int i = 0; i < n; i++) r[i] = _reader.ReadSingle();
                    return r;
                }
                case 8:
                {
                    var r = new string[n];
                    for (int i = 0; i < n; i++) r[i] = ReadString();
                    return r;
                }
                case 9:
                    throw Corrupt(path, $"metadata '{key}' nests arrays, which llama.cpp does not read");
                default:
                {
                    var r = new object[n];
                    for (int i = 0; i < n; i++) r[i] = ReadValue(elementType, key);
                    return r;
                }
            }
        }
    }
}
