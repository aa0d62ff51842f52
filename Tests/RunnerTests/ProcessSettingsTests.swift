import Testing
@testable import Runner

@Suite("Process settings")
struct ProcessSettingsTests {
    @Test func resourceLimitsParseAsNspawnWritesThem() throws {
        #expect(try ProcessSettings.parseResourceLimit("NOFILE=1024") == .init(resource: 7, soft: 1024, hard: 1024))
        #expect(try ProcessSettings.parseResourceLimit("RLIMIT_NOFILE=100:200") == .init(resource: 7, soft: 100, hard: 200))
        #expect(try ProcessSettings.parseResourceLimit("core=0:infinity") == .init(resource: 4, soft: 0, hard: ProcessSettings.infinity))
        for bad in ["NOFILE", "BOGUS=1", "NOFILE=x", "NOFILE=10:5", "NOFILE=1:2:3", "NOFILE="] {
            #expect(throws: RunnerError.invalidOption(option: "--rlimit", value: bad)) { try ProcessSettings.parseResourceLimit(bad) }
        }
    }

    @Test func oomScoreAndCPUList() throws {
        #expect(try ProcessSettings.parseOOMScoreAdjust("-1000") == -1000)
        #expect(throws: RunnerError.invalidOption(option: "--oom-score-adjust", value: "1001")) { try ProcessSettings.parseOOMScoreAdjust("1001") }
        #expect(try ProcessSettings.parseCPUList("0,2-3 5") == [0, 2, 3, 5])
        #expect(throws: RunnerError.invalidOption(option: "--cpu-affinity", value: "3-1")) { try ProcessSettings.parseCPUList("3-1") }
        #expect(throws: RunnerError.invalidOption(option: "--cpu-affinity", value: "")) { try ProcessSettings.parseCPUList("") }
        var settings = ProcessSettings()
        settings.cpuAffinity = [0, 65]
        #expect(settings.cpuMaskWords == [1, 2])
        #expect(try ProcessSettings.parsePersonality("x86") == 8)
        #expect(throws: RunnerError.invalidOption(option: "--personality", value: "sparc")) { try ProcessSettings.parsePersonality("sparc") }
    }
}
