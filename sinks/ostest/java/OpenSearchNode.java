// OpenSearchNode starts a single OpenSearch node inside this JVM, for the
// tests of sluice's OpenSearch sink. It is compiled at test time against the
// jars Maven fetches (see ../pom.xml and ../ostest.go).
//
// The node is constructed in-process, not through OpenSearch's bootstrap:
// the bootstrap refuses to run as root, installs a security manager and
// runs production checks (vm.max_map_count, file descriptors) that a test
// machine does not meet and a test does not need.
//
// Usage: java -cp JARS:CLASSES OpenSearchNode HOME
//
// HTTP and transport listen on ephemeral loopback ports; the HTTP address is
// written to HOME/logs/http.ports (node.portsfile). The node runs until its
// standard input ends, so it never outlives the process that started it.
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;

import org.opensearch.common.settings.Settings;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public final class OpenSearchNode {
    private static final class ClasspathNode extends Node {
        ClasspathNode(Settings settings) {
            super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "sluice-test"),
                    List.of(Netty4Plugin.class), true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: OpenSearchNode HOME");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("logs"));
        Settings settings = Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", home.resolve("data").toString())
                .put("path.logs", home.resolve("logs").toString())
                .put("cluster.name", "sluice-test")
                .put("node.name", "sluice-test-0")
                .put("discovery.type", "single-node")
                .put("network.host", "127.0.0.1")
                .put("http.port", "0")
                .put("transport.port", "0")
                .put("node.portsfile", true)
                // A test machine's disk may be fuller than the production
                // watermarks allow; the node must still take writes.
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put("http.type", "netty4")
                .put("transport.type", "netty4")
                .build();
        Node node = new ClasspathNode(settings);
        node.start();
        System.out.println("started");
        System.out.flush();
        InputStream in = System.in;
        byte[] buf = new byte[256];
        while (in.read(buf) >= 0) {
            // Wait for the parent to close our standard input (or die).
        }
        node.close();
        System.exit(0);
    }
}
