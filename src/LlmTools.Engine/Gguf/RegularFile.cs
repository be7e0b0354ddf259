using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace LlmTools.Engine.Gguf;

/// <summary>
/// Opens model files for reading only when they are regular files. A FIFO, socket or device named *.gguf must not be
/// opened the ordinary way: open(2) on a FIFO blocks until a writer appears, which hangs the caller (and Ctrl+C).
/// On Unix the file is opened with O_NONBLOCK (which never blocks) and its type read with fstat before any read.
/// </summary>
internal static class RegularFile
{
    public static FileStream OpenRead(string path)
    {
        try
        {
            if (Directory.Exists(path))
                throw new LlmException("ModelPathIsDirectory", LlmErrorKind.InvalidArgument,
                    $"'{path}' is a folder; give the path of a .gguf file inside it (Get-LlmModel -Path '{path}' lists them).", path);
            if (OperatingSystem.IsWindows())
                return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16);
            return OpenUnix(path);
        }
        catch (LlmException)
        {
            throw;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new LlmException("ModelFileNotFound", LlmErrorKind.ObjectNotFound, $"Model file '{path}' does not exist.", path, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PathTooLongException or ArgumentException or NotSupportedException)
        {
            throw new LlmException("ModelFileUnreadable", LlmErrorKind.ResourceUnavailable, $"Model file '{path}' cannot be read: {e.Message}", path, e);
        }
    }

    /// <summary>True for a path that names a regular file (after symbolic links); false for anything else or nothing.</summary>
    public static bool IsRegular(string path)
    {
        try
        {
            using var s = OpenRead(path);
            return true;
        }
        catch (LlmException)
        {
            return false;
        }
    }

    private static FileStream OpenUnix(string path)
    {
        int flags = OperatingSystem.IsMacOS() ? 0x0004 | 0x1000000 : 0x0800 | 0x80000; // O_RDONLY|O_NONBLOCK|O_CLOEXEC
        int fd = Native.open(path, flags);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw errno switch
            {
                2 => new FileNotFoundException(Marshal.GetPInvokeErrorMessage(errno), path), // ENOENT
                20 => new DirectoryNotFoundException(Marshal.GetPInvokeErrorMessage(errno)), // ENOTDIR
                13 or 1 => new UnauthorizedAccessException(Marshal.GetPInvokeErrorMessage(errno)), // EACCES, EPERM
                6 => NotRegular(path), // ENXIO: a FIFO or socket without a peer
                _ => new IOException(Marshal.GetPInvokeErrorMessage(errno)),
            };
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            if (Native.FStat(handle, out var st) != 0)
                throw new IOException(Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError()));
            if ((st.Mode & Native.S_IFMT) == Native.S_IFDIR)
                throw new LlmException("ModelPathIsDirectory", LlmErrorKind.InvalidArgument,
                    $"'{path}' is a folder; give the path of a .gguf file inside it (Get-LlmModel -Path '{path}' lists them).", path);
            if ((st.Mode & Native.S_IFMT) != Native.S_IFREG)
                throw NotRegular(path);
            return new FileStream(handle, FileAccess.Read, 1 << 16);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static LlmException NotRegular(string path) =>
        new("ModelPathNotRegularFile", LlmErrorKind.InvalidArgument,
            $"'{path}' is not a regular file (it is a pipe, socket or device), so it is not read as a model. Give the path of a .gguf file.", path);

    private static class Native
    {
        // The file type bits of System.Native's own stat (the .NET runtime's shim, same values on every Unix).
        public const int S_IFMT = 0xF000, S_IFDIR = 0x4000, S_IFREG = 0x8000;

        [StructLayout(LayoutKind.Sequential, Size = 256)]
        public struct FileStatus
        {
            public int Flags;
            public int Mode;
        }

        [DllImport("libSystem.Native", EntryPoint = "SystemNative_FStat", SetLastError = true)]
        public static extern int FStat(SafeFileHandle fd, out FileStatus output);

        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);
    }
}
