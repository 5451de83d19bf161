// The Java service sample of the DPS how-to ("Programmatically create a DPS
// enrollment group for X.509 certificate attestation"), as written there:
// createFromConnectionString, X509Attestation.createFromRootCertificates with
// the intermediate's PEM, status enabled, createOrUpdateEnrollmentGroup, then
// get, query and delete. Only the constants come from the environment
// (DPS_CONNECTION_STRING, GROUP_CERT_FILE, ENROLLMENT_GROUP_ID), and each step
// prints one `step: …` line the Rust test checks. After the sample, a get of
// the deleted group must fail with ProvisioningServiceClientNotFoundException.
package pki.interop;

import com.microsoft.azure.sdk.iot.provisioning.service.ProvisioningServiceClient;
import com.microsoft.azure.sdk.iot.provisioning.service.Query;
import com.microsoft.azure.sdk.iot.provisioning.service.configs.Attestation;
import com.microsoft.azure.sdk.iot.provisioning.service.configs.EnrollmentGroup;
import com.microsoft.azure.sdk.iot.provisioning.service.configs.ProvisioningStatus;
import com.microsoft.azure.sdk.iot.provisioning.service.configs.QueryResult;
import com.microsoft.azure.sdk.iot.provisioning.service.configs.QuerySpecification;
import com.microsoft.azure.sdk.iot.provisioning.service.configs.QuerySpecificationBuilder;
import com.microsoft.azure.sdk.iot.provisioning.service.configs.X509Attestation;
import com.microsoft.azure.sdk.iot.provisioning.service.exceptions.ProvisioningServiceClientException;
import com.microsoft.azure.sdk.iot.provisioning.service.exceptions.ProvisioningServiceClientNotFoundException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

public class ServiceEnrollmentGroupSample
{
    private static final String PROVISIONING_CONNECTION_STRING = System.getenv("DPS_CONNECTION_STRING");
    private static final String PUBLIC_KEY_CERTIFICATE_STRING = readFile(System.getenv("GROUP_CERT_FILE"));
    private static final String IOTHUB_HOST_NAME = "java-hub.azure-devices.net";
    private static final ProvisioningStatus PROVISIONING_STATUS = ProvisioningStatus.ENABLED;
    private static final String ENROLLMENT_GROUP_ID = System.getenv("ENROLLMENT_GROUP_ID");
    private static final int QUERY_PAGE_SIZE = 1;

    public static void main(String[] args) throws ProvisioningServiceClientException
    {
        System.out.println("Starting sample...");
        ProvisioningServiceClient provisioningServiceClient =
                ProvisioningServiceClient.createFromConnectionString(PROVISIONING_CONNECTION_STRING);

        // ******************************** Create a new enrollmentGroup config **********************************
        System.out.println("\nCreate a new enrollmentGroup...");
        Attestation attestation = X509Attestation.createFromRootCertificates(PUBLIC_KEY_CERTIFICATE_STRING);
        EnrollmentGroup enrollmentGroup = new EnrollmentGroup(ENROLLMENT_GROUP_ID, attestation);
        enrollmentGroup.setIotHubHostName(IOTHUB_HOST_NAME);
        enrollmentGroup.setProvisioningStatus(PROVISIONING_STATUS);

        // ************************************ Create the enrollmentGroup *************************************
        System.out.println("\nAdd new enrollmentGroup...");
        EnrollmentGroup enrollmentGroupResult = provisioningServiceClient.createOrUpdateEnrollmentGroup(enrollmentGroup);
        System.out.println("\nEnrollmentGroup created with success...");
        System.out.println(enrollmentGroupResult);
        System.out.println("step: created " + enrollmentGroupResult.getEnrollmentGroupId()
                + " status=" + enrollmentGroupResult.getProvisioningStatus()
                + " hub=" + enrollmentGroupResult.getIotHubHostName()
                + " etag=" + enrollmentGroupResult.getEtag());

        // ************************************* Get info of enrollmentGroup *************************************
        System.out.println("\nGet the enrollmentGroup information...");
        EnrollmentGroup getResult = provisioningServiceClient.getEnrollmentGroup(ENROLLMENT_GROUP_ID);
        System.out.println(getResult);
        X509Attestation x509 = (X509Attestation) getResult.getAttestation();
        System.out.println("step: got " + getResult.getEnrollmentGroupId()
                + " status=" + getResult.getProvisioningStatus()
                + " subject=" + x509.getPrimaryX509CertificateInfo().getSubjectName());

        // ************************************** Query info of enrollmentGroup **********************************
        System.out.println("\nCreate a query for enrollmentGroups...");
        QuerySpecification querySpecification =
                new QuerySpecificationBuilder("*", QuerySpecificationBuilder.FromType.ENROLLMENT_GROUPS)
                        .createSqlQuery();
        Query query = provisioningServiceClient.createEnrollmentGroupQuery(querySpecification, QUERY_PAGE_SIZE);
        int pages = 0;
        int found = 0;
        while (query.hasNext())
        {
            QueryResult queryResult = query.next();
            System.out.println(queryResult);
            pages++;
            for (Object item : queryResult.getItems())
            {
                if (((EnrollmentGroup) item).getEnrollmentGroupId().equals(ENROLLMENT_GROUP_ID))
                {
                    found++;
                }
            }
        }
        System.out.println("step: queried pages=" + pages + " found=" + found);

        // ************************************** Delete info of enrollmentGroup *********************************
        System.out.println("\nDelete the enrollmentGroup...");
        provisioningServiceClient.deleteEnrollmentGroup(ENROLLMENT_GROUP_ID);
        System.out.println("step: deleted " + ENROLLMENT_GROUP_ID);

        try
        {
            provisioningServiceClient.getEnrollmentGroup(ENROLLMENT_GROUP_ID);
            System.out.println("step: still there after delete");
        }
        catch (ProvisioningServiceClientNotFoundException e)
        {
            System.out.println("step: gone (" + e.getClass().getSimpleName() + ")");
        }
        System.out.println("java-service-sample: ok");
    }

    private static String readFile(String path)
    {
        try
        {
            return Files.readString(Path.of(path));
        }
        catch (IOException | NullPointerException e)
        {
            throw new IllegalArgumentException("GROUP_CERT_FILE must name the group's PEM file: " + e);
        }
    }
}
