extension LoadTarget {
    /// Parses a command-line target:
    /// `LABEL=HOST:PORT[,host=H][,path=P][,method=M][,body=B][,header=NAME:VALUE][,expect-pool=X][,expect-body=S]`.
    ///
    /// An empty HOST means 127.0.0.1. Values cannot contain commas; `header` may
    /// repeat. Only the syntax is checked here; `LoadConfiguration.validate()`
    /// checks the values.
    public init(spec: String) throws(LoadConfigurationError) {
        func invalid(_ reason: String) -> LoadConfigurationError {
            .invalidSpec(spec: spec, reason: reason)
        }
        guard let equals = spec.firstIndex(of: "=") else { throw invalid("no '=' after the label") }
        let label = String(spec[..<equals])
        guard !label.isEmpty else { throw invalid("empty label") }
        var parts = spec[spec.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false)
        guard !parts.isEmpty else { throw invalid("no HOST:PORT") }
        let address = parts.removeFirst()
        guard let colon = address.lastIndex(of: ":") else { throw invalid("'\(address)' is not HOST:PORT") }
        let host = address[..<colon].isEmpty ? "127.0.0.1" : String(address[..<colon])
        guard let port = Int(address[address.index(after: colon)...]) else {
            throw invalid("'\(address[address.index(after: colon)...])' is not a port number")
        }
        self.init(label: label, host: host, port: port)
        for part in parts {
            guard let separator = part.firstIndex(of: "=") else { throw invalid("'\(part)' is not key=value") }
            let key = part[..<separator]
            let value = String(part[part.index(after: separator)...])
            switch key {
            case "host": hostHeader = value
            case "path": path = value
            case "method": method = value.uppercased()
            case "body": body = value
            case "expect-pool": expectedPool = value
            case "expect-body": expectedBodySubstring = value
            case "header":
                guard let colon = value.firstIndex(of: ":") else { throw invalid("header '\(value)' is not NAME:VALUE") }
                headers[String(value[..<colon])] = value[value.index(after: colon)...].trimmingSpaces()
            default:
                throw invalid("unknown key '\(key)'")
            }
        }
    }
}
