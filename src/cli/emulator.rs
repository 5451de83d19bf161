//! `pki emulator`: run a local DPS over HTTPS.

use std::path::PathBuf;

use crate::emulator::{Options, prepare, serve};
use crate::error::{Error, Result};

/// Arguments of `pki emulator`.
///
/// Runs a local Device Provisioning Service: the service API (enrollment
/// groups, individual enrollments, registration states), the device
/// registration API (X.509 and symmetric-key devices) and the CA certificate
/// proof-of-possession calls, on one HTTPS listener. The official Node and
/// Java SDKs always dial port 443, so run `--listen 127.0.0.1:443` for them
/// (ports below 1024 need root or CAP_NET_BIND_SERVICE) and trust the CA with
/// NODE_EXTRA_CA_CERTS, or for Java the printed -Djavax.net.ssl.trustStore
/// options (truststore.p12); the Python SDKs accept `host:port` in the
/// connection string and trust it with REQUESTS_CA_BUNDLE.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
pki emulator --json\n  \
sudo \"$(command -v pki)\" emulator --listen 127.0.0.1:443   # Node, Java\n  \
pki emulator --in-memory --listen 127.0.0.1:0 --json   # throwaway, free port")]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; 443 needs root or CAP_NET_BIND_SERVICE).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: String,
    /// Extra host name (or IP) for the server certificate; repeatable.
    /// localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,
    /// Directory for the TLS CA, server certificate, SAS key, ID scope and database.
    #[arg(long, default_value = "./dps-emulator", value_name = "DIR")]
    pub data: PathBuf,
    /// Keep enrollments and registrations in memory only (TLS files still go to --data).
    #[arg(long)]
    pub in_memory: bool,
    /// SAS key (base64) of policy provisioningserviceowner, instead of the stored random one.
    #[arg(
        long,
        value_name = "BASE64",
        env = "PKI_EMULATOR_SAS_KEY",
        hide_env_values = true
    )]
    pub sas_key: Option<String>,
    /// ID scope (`0ne` + 8 hex digits), instead of the stored random one.
    #[arg(long, value_name = "SCOPE")]
    pub id_scope: Option<String>,
    /// IoT hub host name for enrollments that name none; repeatable (hashed over the list).
    #[arg(long = "iot-hub", value_name = "HOST")]
    pub iot_hubs: Vec<String>,
    /// Also require a verified CA (from the certificate store) in every device chain.
    #[arg(long)]
    pub require_verified_ca: bool,
    /// Refuse api-versions the real DPS has retired (e.g. the service API's 2019-03-31,
    /// still sent by the C# v1 and Java service SDKs) with its 400, instead of logging a warning.
    #[arg(long)]
    pub strict_api_versions: bool,
    /// Do not log refused requests and registrations on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON object (connectionString, idScope, caFile, trustStore, trustStorePassword, listen, serviceHost) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the emulator until Ctrl-C or SIGTERM.
pub fn run(args: EmulatorArgs) -> Result<()> {
    let opts = Options {
        listen: args.listen,
        hostnames: args.hostnames,
        data: args.data,
        in_memory: args.in_memory,
        sas_key: args.sas_key,
        id_scope: args.id_scope,
        iot_hubs: args.iot_hubs,
        require_verified_ca: args.require_verified_ca,
        strict_api_versions: args.strict_api_versions,
        log: !args.quiet,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let prepared = prepare(&opts).await?;
        let s = &prepared.started;
        if args.json {
            let line = serde_json::to_string(s).map_err(|e| Error::failed(e.to_string()))?;
            println!("{line}");
        } else {
            let ca = s.ca_file.display();
            println!("pki emulator listening on https://{}", s.listen);
            println!("  service connection string: {}", s.connection_string);
            println!("  ID scope:                  {}", s.id_scope);
            println!("  device endpoint:           {}", s.device_endpoint);
            println!("  CA file to trust:          {ca}");
            println!("    Node:   NODE_EXTRA_CA_CERTS={ca}  (the Node SDKs always use port 443)");
            println!("    Python: REQUESTS_CA_BUNDLE={ca}  (accepts HostName=host:port)");
            let java = crate::emulator::truststore::java_options(&s.trust_store);
            println!("    Java:   java {java}  (the Java SDKs always use port 443)");
            println!(
                "  storage: {}",
                if opts.in_memory {
                    "in memory (lost on exit)".to_string()
                } else {
                    opts.data.join("dps.redb").display().to_string()
                }
            );
            println!("Press Ctrl-C to stop.");
        }
        // Scripts read the start-up line through a pipe: flush it now.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        serve(prepared).await
    })
}
