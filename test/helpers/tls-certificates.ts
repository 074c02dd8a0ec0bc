/** The certificate maker moved to src/testbed/ (the benchmark uses it too); re-exported for the tests. */
export { makeCertificates, type CertFiles, type TestCertificates } from '../../src/testbed/tls-certificates.js';
