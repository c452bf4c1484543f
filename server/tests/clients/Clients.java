// The steps of the real-client harness for pgjdbc (server/tests/clients.rs).
// Usage: java -cp postgresql.jar:. Clients HOST PORT DBNAME
// Prints one line per step: `step<TAB>value`, the same against Weir as against PostgreSQL.
import java.sql.*;
import java.util.*;

public class Clients {
    static final String PARAMS_SQL = "SELECT source, count, window_start FROM kpi_1m "
        + "WHERE source = ? AND window_start >= ? ORDER BY window_start LIMIT 3";
    static final String PREPARED_SQL =
        "SELECT count(*) AS n, max(count) AS top FROM kpi_1m WHERE source = ? AND count > ?";
    static final String SIMPLE_SQL =
        "SELECT 1 AS one, 'it''s' AS t, NULL::text AS n, 2.5::float8 AS f, true AS b";
    static final String[] ERRORS = {
        "SELECT * FROM no_such_view", "SELECT nonsense FROM kpi_1m", "SELEC 1"
    };

    static void out(String step, Object value) {
        System.out.println(step + "\t" + value);
    }

    static Object cell(ResultSet rs, int i) throws SQLException {
        Object v = rs.getObject(i);
        if (v instanceof Timestamp) {
            return ((Timestamp) v).toInstant().toString();
        }
        return v;
    }

    static List<List<Object>> rows(ResultSet rs) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                row.add(cell(rs, i));
            }
            out.add(row);
        }
        return out;
    }

    static List<String> columns(ResultSetMetaData m) throws SQLException {
        List<String> out = new ArrayList<>();
        for (int i = 1; i <= m.getColumnCount(); i++) {
            out.add(m.getColumnLabel(i) + ":" + m.getColumnTypeName(i) + ":" + m.getColumnType(i));
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        String db = args[2];
        Properties props = new Properties();
        props.setProperty("user", db.equals("weir") ? "weir" : "postgres");
        // Against Weir the harness logs in with SCRAM over TLS (tests/clients.rs sets these).
        String password = System.getenv("WEIR_CLIENT_PASSWORD");
        if (password != null) {
            props.setProperty("password", password);
        }
        String sslmode = System.getenv("WEIR_CLIENT_SSLMODE");
        if (sslmode != null) {
            props.setProperty("sslmode", sslmode);
        }
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + db;
        try (Connection c = DriverManager.getConnection(url, props)) {
            out("connect", c.getMetaData().getDatabaseMajorVersion() >= 9);
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(SIMPLE_SQL)) {
                out("simple", columns(rs.getMetaData()) + " " + rows(rs));
            }
            Timestamp since = Timestamp.from(java.time.Instant.parse("2024-05-01T12:30:00Z"));
            try (PreparedStatement p = c.prepareStatement(PARAMS_SQL)) {
                p.setString(1, "src-0001");
                p.setTimestamp(2, since, Calendar.getInstance(TimeZone.getTimeZone("UTC")));
                try (ResultSet rs = p.executeQuery()) {
                    out("params", rows(rs));
                }
            }
            // pgjdbc switches to a named server-side statement (and binary results) at the
            // fifth execution (prepareThreshold).
            List<Object> results = new ArrayList<>();
            try (PreparedStatement p = c.prepareStatement(PREPARED_SQL)) {
                for (int i = 0; i < 6; i++) {
                    p.setString(1, "src-0001");
                    p.setLong(2, i * 100L);
                    try (ResultSet rs = p.executeQuery()) {
                        results.add(rows(rs));
                    }
                }
            }
            out("prepared_x6", results);
            List<String> codes = new ArrayList<>();
            for (String sql : ERRORS) {
                try (Statement s = c.createStatement()) {
                    s.executeQuery(sql).close();
                    codes.add("no error");
                } catch (SQLException e) {
                    codes.add(e.getSQLState());
                }
            }
            out("errors", codes);
            List<Object> state = new ArrayList<>();
            c.setAutoCommit(false);
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) > 0 FROM kpi_1m")) {
                state.add(rows(rs));
            }
            c.commit();
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM no_such_view").close();
            } catch (SQLException e) {
                state.add(e.getSQLState());
            }
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT 3").close();
                state.add("ran");
            } catch (SQLException e) {
                state.add(e.getSQLState());
            }
            c.rollback();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 4")) {
                state.add(rows(rs));
            }
            out("transaction_errors", state);
            DatabaseMetaData meta = c.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "kpi%", null)) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
                }
            }
            out("metadata_tables", tables);
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "kpi_1m", null)) {
                while (rs.next()) {
                    cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("DATA_TYPE"));
                }
            }
            out("metadata_columns", cols);
        }
    }
}
