/// Version of the on-disk shard and manifest format this build writes and reads.
public let formatVersion: UInt32 = 1
