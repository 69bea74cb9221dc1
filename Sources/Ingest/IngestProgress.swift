import Dispatch
import Format
import Foundation
import Support
import Synchronization

/// Progress of an ingest, reported after every window of lines.
public struct IngestProgress: Sendable {
    /// Input bytes consumed so far (including what a resumed run skipped).
    public var bytesDone: Int
    /// Total input bytes.
    public var bytesTotal: Int
    /// Non-blank lines read.
    public var linesRead: Int
    /// Trajectories written.
    public var written: Int
    /// Lines rejected.
    public var rejected: Int
}

/// What an ingest run produced.
public struct IngestSummary: Sendable {
    /// The dataset's manifest.
    public var manifest: Manifest
    /// Non-blank lines read, trajectories written, lines rejected, responses truncated, blank lines skipped.
    public var linesRead: Int, written: Int, rejected: Int, truncated: Int, blank: Int
    /// Whether this run continued an interrupted one.
    public var resumed: Bool
}
