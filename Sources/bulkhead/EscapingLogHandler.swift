import BulkheadCore
import Logging

/// A log handler that escapes control characters in every message and metadata
/// value before the wrapped handler writes them.
///
/// Why: the supervisor logs text it does not control (a script's load error, a
/// worker's report), and a raw ESC, CR, LF or NUL there could forge log lines or drive
/// the terminal of the operator reading the log (``ControlCharacters``).
struct EscapingLogHandler: LogHandler {
    private var inner: any LogHandler

    init(_ inner: any LogHandler) {
        self.inner = inner
    }

    func log(event: LogEvent) {
        var event = event
        let message = ControlCharacters.escaped(event.message.description)
        event.message = "\(message)"
        event.metadata = event.metadata?.mapValues(Self.escaped)
        inner.log(event: event)
    }

    static func escaped(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(ControlCharacters.escaped(text))
        case .stringConvertible(let item): .string(ControlCharacters.escaped(item.description))
        case .array(let values): .array(values.map(escaped))
        case .dictionary(let values): .dictionary(values.mapValues(escaped))
        }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue.map(Self.escaped) }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue.mapValues(Self.escaped) }
    }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }
}
