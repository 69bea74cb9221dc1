// Checkpoint readers live in their own checked module; Train's users get them with `import Train`.
@_exported import Checkpoint
