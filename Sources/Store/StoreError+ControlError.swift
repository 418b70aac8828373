import BulkheadCore

extension ControlError {
    /// A failure of the store as the control plane reports it: the store's own kinds
    /// that a caller can act on keep their meaning (not found, invalid, conflict, a
    /// full disk, an unreachable etcd); any other error is a store failure. A `ControlError` passes as is.
    public static func fromStore(_ error: any Error) -> ControlError {
        if let error = error as? ControlError { return error }
        if let error = error as? StoreError {
            switch error.kind {
            case .notFound: return ControlError(.notFound, error.description)
            case .invalid: return ControlError(.invalid, error.description)
            case .conflict: return ControlError(.conflict, error.description)
            case .diskFull: return ControlError(.diskFull, error.description)
            // etcd out of reach or without quorum: writes wait for it, reads it cannot serve say so.
            case .unreachable: return ControlError(.controlPlaneUnavailable, error.description)
            default: break
            }
        }
        return ControlError(.store, "\(error)")
    }
}
