import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

@Suite struct LockTests {
    @Test func ofdLocksConflictBetweenDescriptorsOfOneProcess() throws {
        let tmp = try TemporaryDirectory()
        let path = tmp.appending("x.lck")
        let first = try #require(try FileLock.tryLock(path: path, kind: .exclusive))
        #expect(try FileLock.tryLock(path: path, kind: .exclusive) == nil)
        #expect(try FileLock.tryLock(path: path, kind: .shared) == nil)
        #expect(try FileLock.isLocked(path: path))
        first.close()
        #expect(try FileLock.isLocked(path: path) == false)
        // Shared locks coexist; an exclusive one then waits for both.
        let reader1 = try #require(try FileLock.tryLock(path: path, kind: .shared))
        let reader2 = try #require(try FileLock.tryLock(path: path, kind: .shared))
        #expect(try FileLock.tryLock(path: path, kind: .exclusive) == nil)
        // Releasing one reader must not remove the file under the other.
        reader1.releaseRemovingFile()
        #expect(FileManager.default.fileExists(atPath: path))
        reader2.releaseRemovingFile()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func imageLockedByAnotherProcessIsBusy() async throws {
        try Privileged.require(.tool("python3"))
        let s = try ScratchStore()
        try s.makeDirectoryImage("running")
        let holder = try LockHolder(path: "\(s.pool)/.#running.lck", exclusive: false)
        defer { holder.stop() }

        for attempt in ["remove", "rename", "read-only"] {
            do {
                switch attempt {
                case "remove": _ = try await s.store.remove(["running"])
                case "rename": _ = try await s.store.rename("running", to: try ImageName(validating: "other"))
                default: _ = try await s.store.setReadOnly("running", true)
                }
                Issue.record("\(attempt) of a locked image succeeded")
            } catch let error as ImageStore.Error {
                #expect(error == .busy("running"))
                #expect(error.isBusy)
                #expect(error.description.contains("busy"))
            }
        }
        #expect(FileManager.default.fileExists(atPath: "\(s.pool)/running"))
        // A shared holder still lets others read: clone and export work.
        _ = try await s.store.clone("running", to: try ImageName(validating: "copy"), readOnly: false)

        let details = try await s.store.details(named: "running")
        #expect(details.locked)
        #expect(details.lockHolders.contains(holder.pid))

        holder.stop()
        #expect(try await s.store.details(named: "running").locked == false)
        _ = try await s.store.remove(["running"])
    }

    @Test func globalLockCoversTheSameImageUnderAnotherName() async throws {
        let s = try ScratchStore()
        let path = try s.makeDirectoryImage("real")
        // Another pool reaching the same directory through a symlink.
        let otherPool = s.directory.appending("etc-machines")
        try FileManager.default.createDirectory(atPath: otherPool, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: otherPool + "/alias", withDestinationPath: path)
        let store = try ImageStore(pool: s.pool, searchPath: [.init(path: otherPool, vendor: false), .init(path: s.pool, vendor: false)], createPool: false)
        let (image, lock) = try await store.lock(named: "alias", kind: .exclusive)
        #expect(image.path == otherPool + "/alias")
        // Through the other name the image is busy too (global lock keyed by device:inode).
        await #expect(throws: ImageStore.Error.busy("real")) { try await store.remove(["real"]) }
        lock.release()
        _ = try await store.remove(["real"])
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
