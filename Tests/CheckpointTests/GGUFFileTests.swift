import Checkpoint
import Foundation
import Testing

/// GGUF files: the rotary permutation and malformed containers.
@Suite struct GGUFFileTests {
    @Test func unpermuteInvertsLlamaCppPermutation() {
        let heads = 3, hd = 8, cols = 5
        let w = (0..<(heads * hd * cols)).map { Float($0) }
        // llama.cpp: reshape(heads, 2, hd/2, cols).swapaxes(1, 2)
        var permuted = w
        for h in 0..<heads {
            for i in 0..<2 {
                for j in 0..<(hd / 2) {
                    for c in 0..<cols {
                        permuted[((h * hd) + j * 2 + i) * cols + c] = w[((h * hd) + i * (hd / 2) + j) * cols + c]
                    }
                }
            }
        }
        #expect(permuted != w)
        #expect(GGUFFile.unpermuteRotary(permuted, heads: heads, rowsPerHead: hd, cols: cols) == w)
    }

    @Test func rejectsMalformedFiles() throws {
        let dir = NSTemporaryDirectory() + "oreo-gguf-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ bytes: [UInt8]) throws -> String {
            let p = dir + "/f\(bytes.count).gguf"
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            return p
        }
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        #expect(throws: GGUFError.self) { try GGUFFile(path: try write(Array("GGML".utf8) + le(UInt32(3)))) }
        // claims one metadata entry with a string longer than the file
        let lying = Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(0)) + le(UInt64(1)) + le(UInt64(1 << 40))
        #expect(throws: GGUFError.self) { try GGUFFile(path: try write(lying)) }
        // a tensor whose data would run past the end
        var t = Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(1)) + le(UInt64(0))
        t += le(UInt64(1)) + Array("w".utf8) + le(UInt32(1)) + le(UInt64(64)) + le(UInt32(0)) + le(UInt64(0))
        #expect(throws: GGUFError.self) { try GGUFFile(path: try write(t)) }
        // the same tensor with its 256 bytes present loads, and F32 values come back
        var ok = t
        while ok.count % 32 != 0 { ok.append(0) }
        for i in 0..<64 { ok += le(Float(i).bitPattern) }
        let f = try GGUFFile(path: try write(ok))
        #expect(try f.floats("w") == (0..<64).map { Float($0) })
    }
}
