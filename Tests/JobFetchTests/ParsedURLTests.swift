import Testing
@testable import JobFetchCore

@Suite struct ParsedURLTests {
    func resolve(_ reference: String, _ base: String = "http://a/b/c/d;p?q") throws -> String {
        try ParsedURL(reference, relativeTo: try ParsedURL(base)).text
    }

    // MARK: from JobFetch's tests (BackoffTests, StatusReaderTests, HostileInputTests)

    @Test func lastPathSegmentNamesArtifacts() throws {
        // ArtifactName.choose strips the leading dot; the segment is the input.
        #expect(try ParsedURL("https://h/a/.hidden?x=1").lastPathSegment == ".hidden")
        #expect(try ParsedURL("https://h/v0/datasets/x/csv").lastPathSegment == "csv")
        #expect(try ParsedURL("https://h/").lastPathSegment == nil)
        #expect(try ParsedURL("https://h").lastPathSegment == nil)
        #expect(try ParsedURL("https://h/a/r%C3%A9sum%C3%A9.csv/").lastPathSegment == "résumé.csv")
        #expect(try ParsedURL("https://h/a/b%2Fc").lastPathSegment == "c", "decoded, then split")
        #expect(try ParsedURL("https://h/a/b%0a").lastPathSegment == nil, "a control byte")
        #expect(try ParsedURL("https://h/a/100%").lastPathSegment == "100%")
    }

    @Test func urlsAreRedactedForLogs() throws {
        let u = try ParsedURL("https://user:pw@files.example/x/y.csv.gz?X-Amz-Signature=abc#frag")
        #expect(u.redacted == "https://files.example/x/y.csv.gz")
        #expect(u.description == u.redacted)
        #expect(u.origin == "https://files.example:443")
        #expect(u.text == "https://user:pw@files.example/x/y.csv.gz?X-Amz-Signature=abc#frag")
        #expect(try ParsedURL("http://127.0.0.1:9/x").isLoopback)
        #expect(try ParsedURL("http://localhost/x").isLoopback)
        #expect(try ParsedURL("http://[::1]:8080/x").isLoopback)
        #expect(!(try ParsedURL("http://127.0.0.1.evil.com/x").isLoopback))
        #expect(throws: JobFetchError.self) { try ParsedURL("ftp://h/x") }
        #expect(throws: JobFetchError.self) { try ParsedURL("not a url") }
    }

    @Test func completedGivesTheRelativeCSVURL() throws {
        let base = try ParsedURL("https://api.qoery.com/v0/datasets/ds_8f2c1a")
        let resolved = try ParsedURL("/v0/datasets/ds_8f2c1a/csv?format=csv&token=abc123signature", relativeTo: base)
        #expect(resolved.origin == base.origin)
        #expect(resolved.hasQuery)
        #expect(resolved.redacted == "https://api.qoery.com/v0/datasets/ds_8f2c1a/csv")
        let u = try ParsedURL("https://files.qoery.example/r.csv?X-Amz-Signature=abc")
        #expect(u.host == "files.qoery.example")
        #expect(!u.redacted.contains("Signature"))
    }

    @Test func aCombiningMarkHidesNoQueryFromTheRedactor() {
        #expect(ParsedURL.redact("https://h.example/r.csv?\u{593}X-Amz-Signature=SECRET") == "https://h.example/r.csv")
        #expect(ParsedURL.redact("https://user\u{593}@\u{301}h.example/x") == "https://\u{301}h.example/x")
        #expect(throws: JobFetchError.self) { try ParsedURL("https://h.example/r.csv?\u{593}X") }
    }

    // MARK: RFC 3986 §5.4

    @Test(arguments: [
        ("g:h", nil), // not http(s)
        ("g", "http://a/b/c/g"), ("./g", "http://a/b/c/g"), ("g/", "http://a/b/c/g/"),
        ("/g", "http://a/g"), ("//g", "http://g/"), ("?y", "http://a/b/c/d;p?y"),
        ("g?y", "http://a/b/c/g?y"), ("#s", nil), // fragment-only: refused (see ParsedURL)
        ("g#s", "http://a/b/c/g#s"), ("g?y#s", "http://a/b/c/g?y#s"), (";x", "http://a/b/c/;x"),
        ("g;x", "http://a/b/c/g;x"), ("g;x?y#s", "http://a/b/c/g;x?y#s"), ("", nil), // empty: refused
        (".", "http://a/b/c/"), ("./", "http://a/b/c/"), ("..", "http://a/b/"), ("../", "http://a/b/"),
        ("../g", "http://a/b/g"), ("../..", "http://a/"), ("../../", "http://a/"), ("../../g", "http://a/g"),
    ] as [(String, String?)])
    func normalExamples(reference: String, expected: String?) throws {
        if let expected {
            #expect(try resolve(reference) == expected)
        } else {
            #expect(throws: JobFetchError.self) { try resolve(reference) }
        }
    }

    @Test(arguments: [
        ("../../../g", "http://a/g"), ("../../../../g", "http://a/g"), ("/./g", "http://a/g"),
        ("/../g", "http://a/g"), ("g.", "http://a/b/c/g."), (".g", "http://a/b/c/.g"), ("g..", "http://a/b/c/g.."),
        ("..g", "http://a/b/c/..g"), ("./../g", "http://a/b/g"), ("./g/.", "http://a/b/c/g/"),
        ("g/./h", "http://a/b/c/g/h"), ("g/../h", "http://a/b/c/h"), ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
        ("g;x=1/../y", "http://a/b/c/y"), ("g?y/./x", "http://a/b/c/g?y/./x"), ("g?y/../x", "http://a/b/c/g?y/../x"),
        ("g#s/./x", "http://a/b/c/g#s/./x"), ("g#s/../x", "http://a/b/c/g#s/../x"),
        ("http:g", nil), // strict RFC: "http:g", which has no host
    ] as [(String, String?)])
    func abnormalExamples(reference: String, expected: String?) throws {
        if let expected {
            #expect(try resolve(reference) == expected)
        } else {
            #expect(throws: JobFetchError.self) { try resolve(reference) }
        }
    }

    @Test func resolution() throws {
        #expect(try resolve("https://other.example/x", "http://a/b") == "https://other.example/x")
        #expect(try resolve("HTTPS://Other.Example/x", "http://a/b") == "https://other.example/x")
        #expect(try resolve("//other.example:8443/x?y#z", "https://a/b") == "https://other.example:8443/x?y#z")
        #expect(try resolve("../results/out.csv", "https://h.example/a/b/c") == "https://h.example/a/results/out.csv")
        #expect(try resolve("x", "http://u:p@a/b") == "http://u:p@a/x", "the base's user info stays")
        #expect(try resolve("x", "http://a/b#f/g") == "http://a/x", "the base's fragment is not in it")
        #expect(try resolve("?", "http://a/b?q") == "http://a/b?")
        #expect(try resolve("?y", "http://[::1]:9") == "http://[::1]:9/?y")
        #expect(throws: JobFetchError.self) { try ParsedURL("x", relativeTo: nil) }
        #expect(throws: JobFetchError.self) { try resolve("///x") }
        #expect(throws: JobFetchError.self) { try resolve("1x:y") }
    }

    // MARK: normalization

    @Test func componentsAndNormalization() throws {
        let u = try ParsedURL("HTTP://API.Example.COM:08080/a/./b/../c?Q=%2F#F")
        #expect(u.text == "http://api.example.com:8080/a/c?Q=%2F#F")
        #expect((u.scheme, u.host, u.port, u.hasQuery) == ("http", "api.example.com", 8080, true))
        #expect(try ParsedURL("https://h").text == "https://h/")
        #expect(try ParsedURL("https://h").port == 443)
        #expect(try ParsedURL("http://h").port == 80)
        #expect(try ParsedURL("http://h:80/").text == "http://h:80/", "an explicit port stays, as in curl")
        #expect(try ParsedURL("http://h:0/").port == 0)
        #expect(try ParsedURL("http://h:65535/").port == 65535)
        #expect(try ParsedURL("http://h?x").text == "http://h/?x")
        #expect(try ParsedURL("http://h#").text == "http://h/")
        #expect(try ParsedURL("http://h/?").hasQuery)
        #expect(!(try ParsedURL("http://h/#?").hasQuery))
        #expect(try ParsedURL("http://h/a#b?c").text == "http://h/a#b?c")
        #expect(try ParsedURL("http://h/%7e%2E%2e/").text == "http://h/%7e%2E%2e/", "percent-encoding as given")
        #expect(try ParsedURL("http://h/../..").text == "http://h/")
        #expect(try ParsedURL("http://h//x/..").text == "http://h//")
        #expect(try ParsedURL("http://10.0.0.255/").host == "10.0.0.255")
        #expect(try ParsedURL("http://1password.com/").host == "1password.com")
        #expect(try ParsedURL("http://123.cafe/").host == "123.cafe")
        #expect(try ParsedURL("http://under_score.example/").host == "under_score.example")
    }

    @Test func ipv6() throws {
        let u = try ParsedURL("https://[2001:DB8::1]:8443/x")
        #expect((u.host, u.port, u.origin) == ("[2001:db8::1]", 8443, "https://[2001:db8::1]:8443"))
        #expect(try ParsedURL("http://[0:0:0:0:0:0:0:1]/").host == "[::1]", "shortened, as curl does")
        #expect(try ParsedURL("http://[::ffff:1.2.3.4]/").host == "[::ffff:1.2.3.4]")
        #expect(try ParsedURL("http://[::]/").text == "http://[::]/")
        for bad in ["http://[::1/", "http://[::1]x/", "http://[fe80::1%25eth0]/", "http://[1.2.3.4]/",
                    "http://[::1::2]/", "http://[]/", "http://[g::1]/", "http://[::1]:/"] {
            #expect(throws: JobFetchError.self, "\(bad)") { try ParsedURL(bad) }
        }
    }

    @Test func userInfo() throws {
        let u = try ParsedURL("http://user:p%40ss;x@h.example:81/")
        #expect((u.host, u.port, u.text) == ("h.example", 81, "http://user:p%40ss;x@h.example:81/"))
        #expect(u.redacted == "http://h.example:81/")
        #expect(try ParsedURL("http://:@h/").host == "h")
        for bad in ["http://@h/", "http://a@b@h/", "http://a b@h/", "http://a[@h/", "http://u@/x"] {
            #expect(throws: JobFetchError.self, "\(bad)") { try ParsedURL(bad) }
        }
    }

    @Test func rejects() {
        for bad in [
            "", "h.example/x", "//h.example/x", "file:///etc/passwd", "ftp://h/x", "javascript:alert(1)",
            "http:/h/x", "http:///h/x", "http:h/x", "http:\\\\h/x", "http://h\\@evil/", "http://h/a\\b",
            "http://h /", "http://h/ x", "http://h/\tx", "http://h/\u{7f}", "http://h/é", "http://hé/",
            "http://", "http:///", "http://:80/", "http://h:/", "http://h:x/", "http://h:65536/", "http://h:-1/",
            "http://h:1:2/", "http://h%2e/", "http://h~/", "http://a..b/", "http://h./", "http://.h/",
            "http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/", "http://127.1/", "http://1.2.3.4.5/",
            "http://1.2.3.256/", "http://01.2.3.4/", "1http://h/",
        ] {
            #expect(throws: JobFetchError.self, "\(bad.debugDescription)") { try ParsedURL(bad) }
        }
    }

    @Test func errorMessages() {
        func message(_ text: String) -> String {
            do { _ = try ParsedURL(text); return "" } catch { return error.message }
        }
        #expect(message("ftp://u:pw@h/x?sig=1") == #"URL "ftp://h/x" is not http or https"#)
        #expect(message("http:///x") == #"URL "http:///x" has no host"#)
        #expect(message("http://h:99999/x?sig=1") == #"invalid URL "http://h:99999/x": bad port"#)
        #expect(message("not a url") == #"invalid URL "not a url": it contains a space"#)
    }
}
