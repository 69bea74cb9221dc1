import ArgumentParser
import Format

/// `oreo verify`: checks every checksum and the manifest against the shards.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a dataset or shard: every checksum, block, trajectory, and the manifest against the shards.",
        discussion: "Exit status 0 when everything is sound, 1 when any problem was found.")

    @Argument(help: "A dataset directory or a single shard file.") var path: String
    @Flag(help: "Accept a dataset whose writer has not finished.") var allowIncomplete = false

    func run() throws {
        var failures = 0
        if isDirectory(path) {
            let dataset: Dataset
            do { dataset = try Dataset(directory: path, allowIncomplete: allowIncomplete) } catch {
                print("FAILED \(error)")
                throw ExitCode(1)
            }
            let progress = Progress("verify", total: Double(dataset.shardCount), unit: "shards")
            dataset.verify(progress: { i, _ in progress.update(Double(i)) }) { r in
                if let e = r.error {
                    failures += 1
                    print("FAILED \(r.path): \(e)")
                } else {
                    print("ok     \(r.path)")
                }
            }
            progress.finish(Double(dataset.shardCount))
            let m = dataset.manifest
            print(
                "manifest: \(m.shards.count) shard(s), \(m.counts.trajectories) trajectories, \(m.counts.tokens) tokens, \(m.complete ? "complete" : "INCOMPLETE")"
            )
        } else {
            do {
                let shard = try Shard(path: path)
                try shard.cursor().verifyAll()
                print("ok     \(path): \(shard.trajectoryCount) trajectories, \(shard.tokenCount) tokens")
            } catch {
                failures += 1
                print("FAILED \(error)")
            }
        }
        if failures > 0 {
            print("\(failures) problem(s) found")
            throw ExitCode(1)
        }
        print("all checks passed")
    }
}

/// Whether `path` is a directory.
func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

#if canImport(Glibc)
    import Glibc
#endif
