// Registers an X.509 device with the official Java device SDK over HTTPS (or
// MQTT, or MQTT over WebSockets), the way the DPS how-to's Java device sample does: the leaf certificate, its
// PKCS#8 private key and the signer certificates (intermediate, then root) go
// into a SecurityProviderX509Cert, and ProvisioningDeviceClient registers.
// Inputs come from the environment: DPS_HOST (global endpoint), ID_SCOPE,
// CERT_FILE (the device's full chain, leaf first), KEY_FILE and TRANSPORT
// (HTTPS, the default, MQTT or MQTT_WS: a ProvisioningDeviceClientTransportProtocol
// name; the SDK dials 443 for HTTPS and MQTT_WS, 8883 for MQTT). Prints one
// JSON line: {"ok":true,"status":…,"deviceId":…,"assignedHub":…} or
// {"ok":false,"error":…}.
package pki.interop;

import com.microsoft.azure.sdk.iot.provisioning.device.ProvisioningDeviceClient;
import com.microsoft.azure.sdk.iot.provisioning.device.ProvisioningDeviceClientRegistrationResult;
import com.microsoft.azure.sdk.iot.provisioning.device.ProvisioningDeviceClientTransportProtocol;
import com.microsoft.azure.sdk.iot.provisioning.security.SecurityProviderX509;
import com.microsoft.azure.sdk.iot.provisioning.security.hsm.SecurityProviderX509Cert;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

public class DeviceX509Registration
{
    private static final String GLOBAL_ENDPOINT = System.getenv("DPS_HOST");
    private static final String SCOPE_ID = System.getenv("ID_SCOPE");
    private static final ProvisioningDeviceClientTransportProtocol PROVISIONING_DEVICE_CLIENT_TRANSPORT_PROTOCOL =
            ProvisioningDeviceClientTransportProtocol.valueOf(
                    System.getenv().getOrDefault("TRANSPORT", "HTTPS"));
    private static final int MAX_TIME_TO_WAIT_FOR_REGISTRATION_SECONDS = 60;

    public static void main(String[] args) throws Exception
    {
        List<X509Certificate> chain = parseCertificates(Files.readString(Path.of(System.getenv("CERT_FILE"))));
        X509Certificate leafPublicCert = chain.get(0);
        List<X509Certificate> signerCertificates = new ArrayList<>(chain.subList(1, chain.size()));
        PrivateKey leafPrivateKey = parsePrivateKey(Files.readString(Path.of(System.getenv("KEY_FILE"))));

        SecurityProviderX509 securityProviderX509 =
                new SecurityProviderX509Cert(leafPublicCert, leafPrivateKey, signerCertificates);
        ProvisioningDeviceClient provisioningDeviceClient = ProvisioningDeviceClient.create(
                GLOBAL_ENDPOINT, SCOPE_ID, PROVISIONING_DEVICE_CLIENT_TRANSPORT_PROTOCOL, securityProviderX509);
        String line;
        try
        {
            ProvisioningDeviceClientRegistrationResult result =
                    provisioningDeviceClient.registerDeviceSync(MAX_TIME_TO_WAIT_FOR_REGISTRATION_SECONDS * 1000);
            line = "{\"ok\":true,\"status\":" + json(String.valueOf(result.getProvisioningDeviceClientStatus()))
                    + ",\"registrationId\":" + json(result.getRegistrationId())
                    + ",\"deviceId\":" + json(result.getDeviceId())
                    + ",\"assignedHub\":" + json(result.getIothubUri()) + "}";
        }
        catch (Exception e)
        {
            line = "{\"ok\":false,\"error\":" + json(e.getClass().getName() + ": " + e.getMessage()) + "}";
        }
        finally
        {
            provisioningDeviceClient.close();
        }
        System.out.println(line);
        System.exit(0);
    }

    static List<X509Certificate> parseCertificates(String pem) throws Exception
    {
        CertificateFactory factory = CertificateFactory.getInstance("X.509");
        List<X509Certificate> certs = new ArrayList<>();
        for (Certificate c : factory.generateCertificates(
                new ByteArrayInputStream(pem.getBytes(StandardCharsets.US_ASCII))))
        {
            certs.add((X509Certificate) c);
        }
        if (certs.isEmpty())
        {
            throw new IllegalArgumentException("CERT_FILE holds no certificate");
        }
        return certs;
    }

    /** An unencrypted PKCS#8 key (`BEGIN PRIVATE KEY`), as `pki` writes it; EC or RSA. */
    static PrivateKey parsePrivateKey(String pem) throws Exception
    {
        String body = pem.replaceAll("-----(BEGIN|END) PRIVATE KEY-----", "").replaceAll("\\s", "");
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(Base64.getDecoder().decode(body));
        try
        {
            return KeyFactory.getInstance("EC").generatePrivate(spec);
        }
        catch (java.security.spec.InvalidKeySpecException e)
        {
            return KeyFactory.getInstance("RSA").generatePrivate(spec);
        }
    }

    static String json(String s)
    {
        if (s == null)
        {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray())
        {
            if (c == '"' || c == '\\')
            {
                b.append('\\').append(c);
            }
            else if (c < 0x20)
            {
                b.append(String.format("\\u%04x", (int) c));
            }
            else
            {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
