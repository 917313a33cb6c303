// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "jobfetch",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "jobfetchd", targets: ["jobfetchd"]),
        .executable(name: "jobfetchctl", targets: ["jobfetchctl"]),
        // For the fuzz targets in Fuzz/, a package of their own built with -sanitize=fuzzer.
        .library(name: "JobFetch", targets: ["JobFetchCore", "JobFetchStore", "JobFetchTransfer", "JobFetchArtifacts", "JobFetchEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The daemon's service group: graceful shutdown on SIGTERM/SIGINT, SIGHUP as a signal sequence.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Zip archives are read with a well-kept library rather than parsed by hand.
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        // The in-memory due-time schedule's heaps (already built for the service group).
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        // System libraries: typed static-inline wrappers around variadic C APIs and macros.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CIsal", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLinux"),
        // The modules, each depending only on those above it (README "Architecture"):
        // the core is Swift over Glibc, Foundation and swift-log; only the transfer layer links libcurl,
        // only the artifacts layer ISA-L, OpenSSL and ZIPFoundation.
        .target(
            name: "JobFetchCore",
            dependencies: ["CLinux", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "JobFetchStore",
            dependencies: ["JobFetchCore", "CSQLite", "CPQ", .product(name: "HeapModule", package: "swift-collections")]
        ),
        .target(name: "JobFetchTransfer", dependencies: ["JobFetchCore", "CCurl"]),
        .target(
            name: "JobFetchArtifacts",
            dependencies: ["JobFetchCore", "CIsal", "COpenSSL", "CLinux",
                           .product(name: "ZIPFoundation", package: "ZIPFoundation")]
        ),
        .target(
            name: "JobFetchEngine",
            dependencies: ["JobFetchCore", "JobFetchStore", "JobFetchTransfer", "JobFetchArtifacts", "CLinux",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "HeapModule", package: "swift-collections")]
        ),
        .executableTarget(
            name: "jobfetchd",
            dependencies: [
                "JobFetchEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "jobfetchctl",
            dependencies: ["JobFetchCore", "JobFetchStore", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Helpers both test targets use.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(
            name: "JobFetchTests",
            dependencies: ["JobFetchCore", "JobFetchStore", "JobFetchTransfer", "JobFetchArtifacts", "TestSupport"]
        ),
        // The deterministic simulator: the daemon's machine and driver against simulated APIs.
        .testTarget(
            name: "SimulatorTests",
            dependencies: ["JobFetchCore", "JobFetchStore", "JobFetchArtifacts", "JobFetchEngine",
                           .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["JobFetchCore", "JobFetchStore", "JobFetchArtifacts", "JobFetchEngine", "TestSupport",
                           "jobfetchd", "jobfetchctl"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
