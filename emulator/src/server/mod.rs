//! The HTTPS server: TLS, host routing, the auth challenge, api-version checks, paging, the
//! control plane, throttling and fault injection. (To be written.)
