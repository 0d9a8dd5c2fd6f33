using HybridVmm.Cli.Common;
using HybridVmm.Cli.Hosting;
using HybridVmm.Guests;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Api;

/// <summary>Creating a VM, from an image or a snapshot.</summary>
public sealed partial class VmManager
{
    /// <summary>A VM name fits a URL path segment and a file name: 1 to 64 of [A-Za-z0-9._-], not starting with '.', '_' or '-'.</summary>
    private static bool IsVmName(string name) =>
        name.Length is > 0 and <= 64 && char.IsAsciiLetterOrDigit(name[0])
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    /// <summary>Checks the request, reads the image or snapshot, then creates (and maybe starts) the VM at a barrier.</summary>
    public async Task<ApiOutcome<VmInfo>> CreateAsync(CreateVmRequest request, CancellationToken cancellationToken)
    {
        string? name = request.Name;
        if (name is not null && !IsVmName(name))
        {
            return ApiProblem.BadRequest($"'{name}' is not a VM name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        }

        if ((request.Image is null) == (request.Snapshot is null))
        {
            return ApiProblem.BadRequest("give either 'image' (a Multiboot ELF, a bzImage or embedded:NAME) or 'snapshot' (a snapshot file)");
        }

        if (request.MaxInstructions is < 0)
        {
            return ApiProblem.BadRequest("'maxInstructions' must be zero (no limit) or positive");
        }

        if (request.Cpus is < 1 or > RootPartitionApi.MaxProcessors)
        {
            return ApiProblem.BadRequest($"'cpus' must be 1 to {RootPartitionApi.MaxProcessors}, not {request.Cpus}");
        }

        return request.Snapshot is { } snapshotPath
            ? await RestoreAsync(request, snapshotPath, cancellationToken).ConfigureAwait(false)
            : await CreateFromImageAsync(request, request.Image!, cancellationToken).ConfigureAwait(false);
    }

    private async Task<ApiOutcome<VmInfo>> CreateFromImageAsync(CreateVmRequest request, string imageSource, CancellationToken cancellationToken)
    {
        if (request.Name is not { } name)
        {
            return ApiProblem.BadRequest("'name' is required for a VM made from an image");
        }

        if (!SizeParser.TryParseGuestMemory(request.Memory ?? "64M", out ulong memory, out string sizeError))
        {
            return ApiProblem.BadRequest($"memory: {sizeError}");
        }

        if (DiskProblem(request.DiskImage) is { } badDisk)
        {
            return badDisk;
        }

        ApiOutcome<byte[]> image = ReadImage(imageSource, memory);
        if (image.Problem is { } unreadable)
        {
            return unreadable;
        }

        var config = new VmConfiguration
        {
            Name = name,
            Image = image.Value!,
            MemoryBytes = memory,
            CommandLine = request.CommandLine ?? "",
            Devices = request.Devices ?? VmConfiguration.KnownDevices,
            SyntheticDevices = request.SyntheticDevices ?? new List<string>(),
            DiskImage = request.DiskImage,
            InstructionLimit = request.MaxInstructions ?? 0,
            Processors = request.Cpus ?? 1,
        };

        // The image and the configuration are checked before the kernel is touched: a bad one changes nothing.
        if (HostOS.RootPartition.Prepare(config, out VmCreationError? invalid) is null)
        {
            return ApiProblem.BadRequest(invalid!.Kind == VmCreationErrorKind.InvalidImage ? $"image '{imageSource}': {invalid.Message}" : invalid.Message);
        }

        return await AtBarrierAsync<VmInfo>(() =>
        {
            if (Find(name) is not null)
            {
                return ApiProblem.Conflict($"the name '{name}' is already taken");
            }

            VirtualMachine? vm = system.Root.CreateVm(config, out VmCreationError? error);
            return vm is null ? CreationProblem(error!) : Register(vm, imageSource, request.Start);
        }, cancellationToken).ConfigureAwait(false);
    }

    private async Task<ApiOutcome<VmInfo>> RestoreAsync(CreateVmRequest request, string path, CancellationToken cancellationToken)
    {
        if (request.Memory is not null || request.Devices is not null || request.SyntheticDevices is not null || request.CommandLine is not null
            || request.Cpus is not null)
        {
            return ApiProblem.BadRequest("a VM made from a snapshot has the snapshot's memory, vCPUs, devices and command line; give only 'name', 'diskImage', 'maxInstructions' and 'start'");
        }

        if (DiskProblem(request.DiskImage) is { } badDisk)
        {
            return badDisk;
        }

        if (!File.Exists(path))
        {
            return ApiProblem.NotFound($"snapshot '{path}' does not exist");
        }

        VmSnapshot? snapshot;
        try
        {
            snapshot = SnapshotFile.TryRead(path, out string error);
            if (snapshot is null)
            {
                return ApiProblem.BadRequest(error);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return ApiProblem.BadRequest($"cannot read snapshot '{path}': {e.Message}");
        }

        using SavedMemory memory = snapshot.Memory; // the open snapshot file, read straight into the new VM's RAM
        string name = request.Name ?? snapshot.Name;
        if (!IsVmName(name))
        {
            return ApiProblem.BadRequest($"the snapshot's VM name '{name}' cannot be used here; give 'name'");
        }

        if (request.MaxInstructions is > 0)
        {
            snapshot = snapshot with { InstructionLimit = request.MaxInstructions.Value };
        }

        return await AtBarrierAsync<VmInfo>(() =>
        {
            if (Find(name) is not null)
            {
                return ApiProblem.Conflict($"the name '{name}' is already taken");
            }

            VirtualMachine? vm = system.Root.RestoreVm(snapshot, out VmCreationError? error, name, request.DiskImage);
            return vm is null ? CreationProblem(error!) : Register(vm, $"snapshot:{path}", request.Start);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A 'diskImage' that is missing, a directory or not a regular file (a device such as /dev/zero, a FIFO): 400.</summary>
    private static ApiProblem? DiskProblem(string? diskImage) =>
        diskImage is not null && InputFile.Check(diskImage, "disk image", long.MaxValue, ExitStatus.InvalidImage) is { } refusal
            ? ApiProblem.BadRequest(refusal.Message)
            : null;

    /// <summary>Runs at the barrier: the new VM joins the managed ones and, if asked, starts.</summary>
    private ApiOutcome<VmInfo> Register(VirtualMachine vm, string source, bool start)
    {
        var managed = new ManagedVm(vm, source);
        lock (_vms)
        {
            _vms[vm.Name] = managed;
        }

        WatchExit(vm);
        if (start)
        {
            system.Root.Start(vm);
        }

        logger.LogInformation("VM {Name} created in partition {Partition} from {Source}", vm.Name, vm.Partition.Id, source);
        return Describe(managed);
    }

    private static ApiProblem CreationProblem(VmCreationError error) => error.Kind == VmCreationErrorKind.OutOfHostMemory
        ? ApiProblem.Conflict(error.Message)
        : ApiProblem.BadRequest(error.Message);

    /// <summary>An image's bytes: from the embedded samples, or a file no larger than the guest's memory.</summary>
    private static ApiOutcome<byte[]> ReadImage(string source, ulong memoryBytes)
    {
        if (ImageSource.IsEmbedded(source, out string embedded))
        {
            return EmbeddedGuests.Load(embedded) is { } bytes
                ? bytes
                : ApiProblem.NotFound($"no embedded guest '{embedded}' (have: {string.Join(", ", EmbeddedGuests.Names)})");
        }

        try
        {
            var file = new FileInfo(source);
            if (!file.Exists)
            {
                return ApiProblem.NotFound($"image file '{source}' does not exist on the serve host");
            }

            if (file.Length > (long)memoryBytes)
            {
                return ApiProblem.BadRequest($"image file '{source}' ({file.Length} bytes) is larger than the guest's memory ({memoryBytes >> 20} MiB)");
            }

            return File.ReadAllBytes(source);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return ApiProblem.BadRequest($"cannot read image '{source}': {e.Message}");
        }
    }
}
