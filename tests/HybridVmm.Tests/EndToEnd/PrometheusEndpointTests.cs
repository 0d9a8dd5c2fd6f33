using System.Text.RegularExpressions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// serve --metrics (docs/serve.md#metrics): the HybridVmm meter through OpenTelemetry's Prometheus exporter at /metrics
/// on the API; without the option there is no such route.
/// </summary>
public class PrometheusEndpointTests
{
    [Test]
    public async Task ServeWithMetricsExportsTheMeterForPrometheus()
    {
        using ServeProcess serve = ServeProcess.Start("--metrics");
        using HttpClient api = serve.UnixClient();
        string spin = Path.Combine(serve.Directory, "spin.elf");
        File.WriteAllBytes(spin, FlatKernel.Build(a =>
        {
            var top = a.CreateLabel();
            a.mov(Iced.Intel.AssemblerRegisters.dx, 0x80);
            a.Label(ref top);
            a.@out(Iced.Intel.AssemblerRegisters.dx, Iced.Intel.AssemblerRegisters.al);
            a.jmp(top);
        }));
        ApiReply created = await ApiReply.Post(api, "/api/vms", new { name = "scraped", image = spin, memory = "4M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());

        // The exporter reads the meter when scraped; the counters appear once a round barrier has sampled the VM. The
        // instruments are observed one after another, so a barrier may fall between two of them within one scrape: the
        // first scrape that shows one counter need not show the others yet. Scrape until every one has appeared.
        string[] expected =
        [
            @"hybridvmm_instructions_total\{[^}]*vm=""scraped""\} [1-9]",
            @"hybridvmm_exits_total\{[^}]*kind=""io-write""[^}]*vm=""scraped""\} [1-9]",
            @"hybridvmm_vms\{[^}]*state=""running""[^}]*\} 1",
            @"hybridvmm_root_round_trip_duration_seconds_count\{[^}]*vm=""scraped""[^}]*\} [1-9]",
        ];
        string text = "";
        for (int attempt = 0; attempt < 600 && !expected.All(e => Regex.IsMatch(text, e)); attempt++)
        {
            using HttpResponseMessage response = await api.GetAsync("/metrics");
            Assert.That((int)response.StatusCode, Is.EqualTo(200));
            text = await response.Content.ReadAsStringAsync();
            await Task.Delay(100);
        }

        Assert.Multiple(() =>
        {
            foreach (string pattern in expected)
            {
                Assert.That(text, Does.Match(pattern), text);
            }
        });
    }

    [Test]
    public async Task WithoutTheOptionThereIsNoMetricsRoute()
    {
        using ServeProcess serve = ServeProcess.Start();
        using HttpClient api = serve.UnixClient();
        ApiReply reply = await ApiReply.Get(api, "/metrics");
        Assert.That(reply.Status, Is.EqualTo(404));
    }
}
