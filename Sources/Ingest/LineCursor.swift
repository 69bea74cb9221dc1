import Dispatch
import Format
import Foundation
import Support
import Synchronization

/// One line of one input: file index, byte range (without the newline), 1-based number.
struct LineRef {
    var file: Int, start: Int, end: Int, number: Int, blank: Bool
    /// Offset of the following line.
    var next: Int
    /// Running index among non-blank lines of all inputs (decides the part).
    var ordinal = 0

    func withBytes<R>(_ files: [MappedFile], _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try body(bytes(in: files[file].bytes))
    }

    /// The line's bytes (without CR before the newline) in its mapped file's bytes.
    func bytes(in b: UnsafeRawBufferPointer) -> UnsafeBufferPointer<UInt8> {
        var e = end
        if e > start, b[e - 1] == 0x0D { e -= 1 }  // CRLF
        return UnsafeRawBufferPointer(rebasing: b[start..<e]).assumingMemoryBound(to: UInt8.self)
    }
}

/// Walks the lines of the inputs from a resume position.
struct LineCursor {
    let files: [MappedFile]
    var file: Int, offset: Int, number: Int

    init(files: [MappedFile], start: ResumeState) {
        self.files = files
        file = start.file
        offset = start.offset
        number = start.line
    }

    var bytesConsumed: Int {
        files.prefix(file).reduce(0) { $0 + $1.bytes.count } + offset
    }

    /// Input bytes up to the end of line `l` (the cursor itself may have read further ahead).
    func bytesConsumed(upTo l: LineRef) -> Int {
        files.prefix(l.file).reduce(0) { $0 + $1.bytes.count } + l.next
    }

    mutating func next() -> LineRef? {
        while file < files.count {
            let b = files[file].bytes
            if offset >= b.count {
                file += 1
                offset = 0
                number = 0
                continue
            }
            let start = offset
            var end = start
            if let base = b.baseAddress, let p = memchr(base + start, 0x0A, b.count - start) {
                end = base.distance(to: UnsafeRawPointer(p))
            } else {
                end = b.count
            }
            offset = end < b.count ? end + 1 : end
            number += 1
            var blank = true
            for k in start..<end where b[k] != 0x20 && b[k] != 0x09 && b[k] != 0x0D {
                blank = false
                break
            }
            return LineRef(file: file, start: start, end: end, number: number, blank: blank, next: offset)
        }
        return nil
    }
}
