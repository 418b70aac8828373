/// A configuration or `--target` spec that cannot run, and why.
public enum LoadConfigurationError: Error, Equatable, CustomStringConvertible {
    /// No target was given.
    case noTargets
    /// Two targets share a label, so their counts could not be told apart.
    case duplicateLabel(String)
    /// A target's field cannot be used.
    case invalidTarget(label: String, reason: String)
    /// A run setting is out of range.
    case invalidSetting(name: String, reason: String)
    /// A `LABEL=HOST:PORT[,key=value]…` spec cannot be parsed.
    case invalidSpec(spec: String, reason: String)

    /// What is wrong and what to do about it.
    public var description: String {
        switch self {
        case .noTargets:
            "no target to load: give at least one (--target LABEL=HOST:PORT)"
        case .duplicateLabel(let label):
            "two targets are labelled '\(label)': give each its own label"
        case .invalidTarget(let label, let reason):
            "target '\(label)': \(reason)"
        case .invalidSetting(let name, let reason):
            "\(name): \(reason)"
        case .invalidSpec(let spec, let reason):
            "target '\(spec)': \(reason) (expected LABEL=HOST:PORT[,host=H][,path=P][,method=M][,body=B][,header=NAME:VALUE][,expect-pool=X][,expect-body=S])"
        }
    }
}

/// A run that could not start.
public enum LoadRunError: Error, Equatable, CustomStringConvertible {
    /// The system refused another thread; the threads already started were
    /// stopped again.
    case cannotStartThread(started: Int, wanted: Int, reason: String)

    /// What failed, and what to try.
    public var description: String {
        switch self {
        case .cannotStartThread(let started, let wanted, let reason):
            "could only start \(started) of \(wanted) connection threads (\(reason)): use fewer connections"
        }
    }
}
