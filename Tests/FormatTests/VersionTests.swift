import Testing
@testable import Format
@Test func version() { #expect(formatVersion == 1) }
