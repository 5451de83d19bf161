// Opens one HTTPS connection with Java's default trust settings (which
// JAVA_TOOL_OPTIONS from `pki emulator --print-env sh` points at the
// emulator's trust store) and prints the HTTP status, or the TLS error.
// Run as a single-file program: java tests/java/TlsProbe.java URL
import java.net.URI;
import java.net.HttpURLConnection;

public class TlsProbe {
    public static void main(String[] args) throws Exception {
        HttpURLConnection c = (HttpURLConnection) URI.create(args[0]).toURL().openConnection();
        try {
            System.out.println("status " + c.getResponseCode());
        } catch (javax.net.ssl.SSLException e) {
            System.out.println("tls-error " + e);
        }
    }
}
