/// What the platform runtime decided about one request (``PlatformRuntime/evaluate(_:)``).
public enum PlatformVerdict: Sendable {
    /// Let the request through to the customer script (`on_request` returned nil).
    case pass
    /// Answer the request without running the customer script: `on_request` returned
    /// `{ action = "block", status = …, body = … }`. `status` is 200...599 (403 when
    /// the runtime gave none), `body` is a copy (``PlatformRuntime/defaultBlockBody``
    /// when the runtime gave none).
    case block(status: Int, body: [UInt8])
    /// The runtime threw, returned something that is not a verdict, or hit one of its
    /// limits. The caller fails open — the request goes on to the customer script —
    /// and counts a platform error under the error's signature (its message is
    /// `runtime.lua:N: …`, ready for `ErrorSignature.normalize`).
    case failed(ScriptError)
}
