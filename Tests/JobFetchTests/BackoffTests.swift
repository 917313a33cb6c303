import Testing
@testable import JobFetchCore

@Suite struct BackoffTests {
    @Test func pollDelayGrowsToTheCap() {
        let b = Backoff(base: 5, cap: 300)
        #expect(b.pollDelay(after: 1, jitter: 0) == 5)
        #expect(b.pollDelay(after: 2, jitter: 0) == 7.5)
        #expect(b.pollDelay(after: 50, jitter: 0) == 300)
        #expect(b.pollDelay(after: 1, jitter: 1) == 5.5)
        #expect(b.pollDelay(after: 1, jitter: -1) == 4.5)
    }

    @Test func retryDelayDoublesWithJitterAndCap() {
        let b = Backoff(base: 2, cap: 60)
        #expect(b.retryDelay(after: 1, jitter: 1) == 2)
        #expect(b.retryDelay(after: 3, jitter: 1) == 8)
        #expect(b.retryDelay(after: 3, jitter: 0) == 4)
        #expect(b.retryDelay(after: 1000, jitter: 1) == 60)
    }

    @Test func tokenBucketSpacesRequests() {
        var t = TokenBucket(RateLimit(requests: 2, per: 1), now: 0)
        #expect(t.take(now: 0) == nil)
        #expect(t.take(now: 0) == nil)
        #expect(t.take(now: 0) == 0.5)
        #expect(t.take(now: 0.5) == nil)
    }

    @Test func retryAfterSecondsAndHTTPDate() {
        var r = HTTPResponse(status: 429, headers: ["retry-after": "7"], body: [], bytesWritten: 0, error: nil,
                             writeError: nil, bodyTooLarge: false, seconds: 0)
        #expect(r.retryAfter(now: 0) == 7)
        r.headers["retry-after"] = "Sun, 06 Nov 1994 08:49:37 GMT"
        #expect(r.retryAfter(now: 784111770) == 7)
        r.headers["retry-after"] = "soon"
        #expect(r.retryAfter(now: 0) == nil)
    }

    @Test func artifactNamesAreSanitised() throws {
        #expect(ArtifactName.choose(contentDisposition: #"attachment; filename="../../etc/passwd""#, url: nil, contentType: nil) == "passwd")
        #expect(ArtifactName.choose(contentDisposition: "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.csv", url: nil, contentType: nil) == "r_sum_.csv")
        #expect(ArtifactName.choose(contentDisposition: nil, url: try ParsedURL("https://h/a/.hidden?x=1"), contentType: nil) == "hidden")
        #expect(ArtifactName.choose(contentDisposition: nil, url: try ParsedURL("https://h/v0/datasets/x/csv"), contentType: "text/csv; charset=utf-8") == "csv.csv")
        #expect(ArtifactName.choose(contentDisposition: #"inline; filename="job.json""#, url: nil, contentType: nil) == "artifact-job.json")
        #expect(ArtifactName.choose(contentDisposition: nil, url: try ParsedURL("https://h/"), contentType: nil) == "result")
    }

    @Test func urlsAreRedactedForLogs() throws {
        let u = try ParsedURL("https://user:pw@files.example/x/y.csv.gz?X-Amz-Signature=abc#frag")
        #expect(u.redacted == "https://files.example/x/y.csv.gz")
        #expect(u.origin == "https://files.example:443")
        #expect(try ParsedURL("http://127.0.0.1:9/x").isLoopback)
        #expect(try ParsedURL("http://localhost/x").isLoopback)
        #expect(!(try ParsedURL("http://127.0.0.1.evil.com/x").isLoopback))
        #expect(throws: JobFetchError.self) { try ParsedURL("ftp://h/x") }
        #expect(throws: JobFetchError.self) { try ParsedURL("not a url") }
    }
}
