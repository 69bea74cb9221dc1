import CZstd

/// A reusable zstd compression context (one per writer; not shared between threads).
final class ZstdCompressor {
    private let ctx: OpaquePointer
    let level: Int32

    init(level: Int) {
        ctx = ZSTD_createCCtx()
        self.level = Int32(level)
    }

    deinit { ZSTD_freeCCtx(ctx) }

    /// Compresses `src` into `dst` (resized to the bound first); returns the compressed size or nil on failure.
    func compress(_ src: UnsafeRawBufferPointer, into dst: inout [UInt8]) -> Int? {
        let bound = ZSTD_compressBound(src.count)
        if dst.count < bound { dst = [UInt8](repeating: 0, count: bound) }
        let n = dst.withUnsafeMutableBytes { d in
            ZSTD_compressCCtx(ctx, d.baseAddress, d.count, src.baseAddress, src.count, level)
        }
        return ZSTD_isError(n) != 0 ? nil : n
    }
}

/// A reusable zstd decompression context (one per cursor; not shared between threads).
final class ZstdDecompressor {
    private let ctx: OpaquePointer

    init() { ctx = ZSTD_createDCtx() }

    deinit { ZSTD_freeDCtx(ctx) }

    /// Decompresses `src` into exactly `dst.count` bytes; returns an error message or nil on success.
    func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> String? {
        let n = ZSTD_decompressDCtx(ctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(n) != 0 { return "zstd: " + String(cString: ZSTD_getErrorName(n)) }
        if n != dst.count { return "zstd produced \(n) bytes, expected \(dst.count)" }
        return nil
    }
}

/// Version string of the linked libzstd.
public var zstdVersion: String { String(cString: ZSTD_versionString()) }
