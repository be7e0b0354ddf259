namespace LlmTools.Engine.Gguf;

/// <summary>Block sizes of ggml tensor types, to compute how many bytes a tensor occupies in the file.</summary>
internal static class GgmlTypes
{
    // (elements per block, bytes per block), indexed by ggml_type. Null: removed or unknown here.
    private static readonly (int Block, int Bytes)?[] Sizes = BuildTable();

    private static (int, int)?[] BuildTable()
    {
        var t = new (int, int)?[64];
        t[0] = (1, 4);      // F32
        t[1] = (1, 2);      // F16
        t[2] = (32, 18);    // Q4_0
        t[3] = (32, 20);    // Q4_1
        t[6] = (32, 22);    // Q5_0
        t[7] = (32, 24);    // Q5_1
        t[8] = (32, 34);    // Q8_0
        t[9] = (32, 36);    // Q8_1
        t[10] = (256, 84);  // Q2_K
        t[11] = (256, 110); // Q3_K
        t[12] = (256, 144); // Q4_K
        t[13] = (256, 176); // Q5_K
        t[14] = (256, 210); // Q6_K
        t[15] = (256, 292); // Q8_K
        t[16] = (256, 66);  // IQ2_XXS
        t[17] = (256, 74);  // IQ2_XS
        t[18] = (256, 98);  // IQ3_XXS
        t[19] = (256, 50);  // IQ1_S
        t[20] = (32, 18);   // IQ4_NL
        t[21] = (256, 110); // IQ3_S
        t[22] = (256, 82);  // IQ2_S
        t[23] = (256, 136); // IQ4_XS
        t[24] = (1, 1);     // I8
        t[25] = (1, 2);     // I16
        t[26] = (1, 4);     // I32
        t[27] = (1, 8);     // I64
        t[28] = (1, 8);     // F64
        t[29] = (256, 56);  // IQ1_M
        t[30] = (1, 2);     // BF16
        t[34] = (256, 54);  // TQ1_0
        t[35] = (256, 66);  // TQ2_0
        t[39] = (32, 17);   // MXFP4
        return t;
    }

    private static readonly string[] Names = BuildNames();

    private static string[] BuildNames()
    {
        var n = new string[64];
        string[] known =
        [
            "F32", "F16", "Q4_0", "Q4_1", "", "", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
            "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32",
            "I64", "F64", "IQ1_M", "BF16", "", "", "", "TQ1_0", "TQ2_0", "", "", "", "MXFP4",
        ];
        for (int i = 0; i < n.Length; i++)
            n[i] = i < known.Length && known[i].Length > 0 ? known[i] : $"type{i}";
        return n;
    }

    public static bool IsKnown(uint type) => type < Sizes.Length && Sizes[type] is not null;

    public static string Name(uint type) => type < Names.Length ? Names[type] : $"type{type}";

    /// <summary>Bytes the tensor's data occupies, or null when the type is unknown here (newer ggml).</summary>
    public static ulong? ByteSize(uint type, ulong elements, ulong firstDimension)
    {
        if (!IsKnown(type)) return null;
        var (block, bytes) = Sizes[type]!.Value;
        if (firstDimension % (ulong)block != 0) return ulong.MaxValue; // ggml requires whole blocks per row
        return checked(elements / (ulong)block * (ulong)bytes);
    }
}
