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
        // Opened without blocking and refused unless it is a regular file: a FIFO named *.gguf would otherwise hang
        // the open (and the caller) until something writes to it.
        FileStream stream = RegularFile.OpenRead(path);
        using (stream)
        {
            try
            {
                return new Parser(stream, path).Parse();
            }
            catch (LlmException)
            {
                throw;
            }
            catch (EndOfStreamException e)
            {
                throw Corrupt(path, "the header ends before its declared contents (the file is truncated)", e);
            }
            catch (OverflowException e)
            {
                throw Corrupt(path, "a size in the header overflows", e);
            }
            catch (IOException e)
            {
                throw new LlmException("ModelFileUnreadable", LlmErrorKind.ResourceUnavailable, $"Model file '{path}' cannot be read: {e.Message}", path, e);
            }
            catch (Exception e)
            {
                // Whatever else a hostile header provokes is the file's fault, not a crash of the caller.
                throw Corrupt(path, $"its header cannot be read ({e.GetType().Name})", e);
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

            var metadata = new Dictionary<string, object>((int)Math.Min(kvCount, 4096), StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                string key = ReadString();
                uint type = _reader.ReadUInt32();
                object value = ReadValue(type, key);
                if (!metadata.TryAdd(key, value))
                    throw Corrupt(path, $"metadata key '{key}' appears twice");
            }

            var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 65536));
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

        private string ReadString(bool exact = false)
        {
            ulong len = _reader.ReadUInt64();
            if (len > (ulong)Remaining)
                throw Corrupt(path, $"a string of {len} bytes runs past the end of the file (the file is truncated or corrupted)");
            if (len > (ulong)Array.MaxLength)
                throw Corrupt(path, $"a string of {len} bytes is longer than any model needs");
            var bytes = _reader.ReadBytes((int)len);
            if (bytes.Length != (int)len) throw new EndOfStreamException();
            return exact ? ExactUtf8.GetString(bytes) : Encoding.UTF8.GetString(bytes);
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
            if (count > (ulong)Array.MaxLength)
                throw Corrupt(path, $"metadata array '{key}' declares {count} elements, more than can be read");
            int n = (int)count;
            switch (elementType)
            {
                case 0: return Fill(n, _reader.ReadByte);
                case 1: return Fill(n, _reader.ReadSByte);
                case 2: return Fill(n, _reader.ReadUInt16);
                case 3: return Fill(n, _reader.ReadInt16);
                case 4: return Fill(n, _reader.ReadUInt32);
                case 5: return Fill(n, _reader.ReadInt32);
                case 6: return Fill(n, _reader.ReadSingle);
                case 7:
                    return Fill(n, () => _reader.ReadByte() switch
                    {
                        0 => false,
                        1 => true,
                        var b => throw Corrupt(path, $"metadata array '{key}' holds the boolean byte {b}"),
                    });
                // Strings in arrays (vocabularies, merges) keep invalid UTF-8 distinguishable: llama.cpp compares bytes.
                case 8: return Fill(n, () => ReadString(exact: true));
                case 10: return Fill(n, _reader.ReadUInt64);
                case 11: return Fill(n, _reader.ReadInt64);
                case 12: return Fill(n, _reader.ReadDouble);
                case 9:
                    throw Corrupt(path, $"metadata '{key}' nests arrays, which llama.cpp does not read");
                default:
                    throw Corrupt(path, $"metadata array '{key}' has unknown element type {elementType}");
            }
        }

        private static T[] Fill<T>(int n, Func<T> read)
        {
            var r = new T[n];
            for (int i = 0; i < n; i++) r[i] = read();
            return r;
        }
    }

    /// <summary>
    /// UTF-8 that maps each invalid byte to a lone surrogate (U+DC80..U+DCFF, as Python's surrogateescape), so two
    /// tokens that differ only in invalid bytes stay different strings, and "the single byte 0xC3" stays recognisable.
    /// </summary>
    internal static readonly Encoding ExactUtf8 = Encoding.GetEncoding("utf-8", EncoderFallback.ReplacementFallback, new EscapeFallback());

    private sealed class EscapeFallback : DecoderFallback
    {
        public override int MaxCharCount => 1;
        public override DecoderFallbackBuffer CreateFallbackBuffer() => new Buffer();

        private sealed class Buffer : DecoderFallbackBuffer
        {
            private char[] _chars = [];
            private int _next;

            public override bool Fallback(byte[] bytesUnknown, int index)
            {
                _chars = bytesUnknown.Select(b => (char)(0xDC00 + b)).ToArray();
                _next = 0;
                return true;
            }

            public override char GetNextChar() => _next < _chars.Length ? _chars[_next++] : '\0';
            public override bool MovePrevious() => _next > 0 && _next-- > 0;
            public override int Remaining => _chars.Length - _next;
            public override void Reset() { _chars = []; _next = 0; }
        }
    }

    /// <summary>The bytes a string read with <see cref="ExactUtf8"/> came from.</summary>
    internal static byte[] ExactBytes(string s)
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
}
