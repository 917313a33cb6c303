// swift-tools-version: 6.0
// libFuzzer targets for every parser of untrusted bytes in JobFetch.
// A package of its own, because every target is built with
// -sanitize=fuzzer,address and -parse-as-library (libFuzzer supplies main),
// as apple/swift-protobuf's FuzzTesting package does. Build and run with
// Fuzz/run.sh (or `make fuzz`); see Fuzz/README.md.
//
// One wrinkle of tools versions >= 5.5: SwiftPM links an executable target
// with `--defsym main=<Target>_main` on Linux (it renames an executable's
// entry point so tests can link it), and with -parse-as-library there is no
// such symbol. So each target defines `<Target>_main` itself, and it does
// what libFuzzer's own main() does: LLVMFuzzerRunDriver(&argc, &argv,
// LLVMFuzzerTestOneInput). The flags, the options and the behaviour are
// libFuzzer's.
import PackageDescription

let targets = [
    "FuzzJSON",          // JSONParser.parse + JSONWriter round trip
    "FuzzConfig",        // ConfigParser.parse (secrets: .syntaxOnly)
    "FuzzSpoolFile",     // SpoolFile.parse, JobID
    "FuzzStatusReader",  // StatusReader.read under every preset
    "FuzzURL",           // ParsedURL, relative resolution, redaction
    "FuzzURLAgreement",  // ParsedURL against libcurl's URL API: the same origin whenever ours accepts
    "FuzzTimestamp",     // PresignedURL.expiry, Timestamp.parse/iso8601
    "FuzzHTTPHeaders",   // ContentRange, ArtifactName, Retry-After, HTTP dates
    "FuzzInflate",       // InflateStream (ISA-L), fed in pieces
    "FuzzZip",           // ZipExtractor.extract into a scratch directory
]

let package = Package(
    name: "JobFetchFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "jobfetch", path: "..")],
    targets: [
        // libFuzzer's driver entry point, declared for Swift (header only).
        .systemLibrary(name: "CLibFuzzer", path: "Sources/CLibFuzzer"),
        // libcurl, for FuzzURLAgreement to compare with (the daemon's shim under another module name).
        .systemLibrary(name: "CCurlReference", path: "Sources/CCurlReference", pkgConfig: "libcurl"),
    ] + targets.map { name in
        .executableTarget(
            name: name,
            dependencies: ["CLibFuzzer", .product(name: "JobFetch", package: "jobfetch")] + (name == "FuzzURLAgreement" ? ["CCurlReference"] : []),
            path: "Sources/\(name)"
        )
    },
    swiftLanguageModes: [.v6]
)
