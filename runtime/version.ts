/** berth's version, as package.json has it (test/cli-version.test.ts keeps the two equal). */
export const VERSION = '0.1.0';

/** The OCI runtime-spec version berth writes into the configs it makes and reports. */
export const OCI_VERSION = '1.2.0';
