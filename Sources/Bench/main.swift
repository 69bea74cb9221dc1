import Train
BLASRuntime.ensurePreferredKernels()
print(BLASRuntime.summary)
