import Format
import Support

/// Raw JSONL trajectories to tokenized shards: the tokenizer and the ingest pipeline live in this module.
public enum Ingest {}
