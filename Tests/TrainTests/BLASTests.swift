import Testing
import Train
@Test func blasCoreIsReported() { #expect(!BLASRuntime.coreName.isEmpty) }
