using System.Reflection;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.Memory;
using HybridVmm.Hypervisor;

namespace HybridVmm.Tests.Kernel;

/// <summary>
/// Isolation by types: nothing the kernel assembly makes public hands out a CPU core, a SynIC, an address space
/// or the host's physical memory. The root partition (and every sample) can reach guests only through
/// <see cref="RootPartitionApi"/>'s handles and operations.
/// </summary>
public class RootBoundaryTests
{
    private static readonly Assembly Kernel = typeof(HypervisorKernel).Assembly;

    /// <summary>Kernel-private machinery, by type: hardware the kernel owns, and its own per-partition objects.</summary>
    private static bool IsForbidden(Type type) =>
        type == typeof(X86Core) || type == typeof(HostPhysicalMemory) || type == typeof(SecondLevelPageTable)
        || type.FullName is "HybridVmm.Hypervisor.GuestMemory.GuestPhysicalAddressSpace" or "HybridVmm.Hypervisor.SynIc.SyntheticInterruptController"
            or "HybridVmm.Hypervisor.Partitions.Partition" or "HybridVmm.Hypervisor.Partitions.VirtualProcessor"
        || (type.Assembly == Kernel && !type.IsVisible);

    private static IEnumerable<Type> Mentioned(Type type)
    {
        if (type.HasElementType)
        {
            foreach (Type inner in Mentioned(type.GetElementType()!)) yield return inner;
            yield break;
        }

        yield return type;
        if (type.IsGenericType)
        {
            foreach (Type argument in type.GetGenericArguments())
            {
                foreach (Type inner in Mentioned(argument)) yield return inner;
            }
        }
    }

    private static IEnumerable<string> Leaks()
    {
        const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (Type type in Kernel.GetExportedTypes())
        {
            foreach (MemberInfo member in type.GetMembers(Everything))
            {
                IEnumerable<Type> exposed = member switch
                {
                    FieldInfo f when f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly => new[] { f.FieldType },
                    PropertyInfo p when p.GetMethod is { } g && (g.IsPublic || g.IsFamily) => new[] { p.PropertyType },
                    PropertyInfo p when p.SetMethod is { } s && (s.IsPublic || s.IsFamily) => new[] { p.PropertyType },
                    MethodInfo m when m.IsPublic || m.IsFamily => m.GetParameters().Select(x => x.ParameterType).Append(m.ReturnType),
                    ConstructorInfo c when c.IsPublic || c.IsFamily => c.GetParameters().Select(x => x.ParameterType),
                    EventInfo e when e.AddMethod is { } add && (add.IsPublic || add.IsFamily) => new[] { e.EventHandlerType! },
                    _ => Array.Empty<Type>(),
                };
                foreach (Type t in exposed.SelectMany(Mentioned).Where(IsForbidden).Distinct())
                {
                    yield return $"{type.FullName}.{member.Name} exposes {t.FullName}";
                }
            }

            if (type.BaseType is { } baseType && Mentioned(baseType).Any(IsForbidden))
            {
                yield return $"{type.FullName} derives from {baseType.FullName}";
            }
        }
    }

    [Test]
    public void NoPublicKernelTypeExposesACoreASynicOrAnAddressSpace()
    {
        Assert.That(Leaks(), Is.Empty);
    }

    [Test]
    public void TheKernelsOwnObjectsAreNotPublic()
    {
        string[] internalTypes =
        {
            "HybridVmm.Hypervisor.Partitions.Partition",
            "HybridVmm.Hypervisor.Partitions.VirtualProcessor",
            "HybridVmm.Hypervisor.GuestMemory.GuestPhysicalAddressSpace",
            "HybridVmm.Hypervisor.SynIc.SyntheticInterruptController",
        };
        Assert.Multiple(() =>
        {
            foreach (string name in internalTypes)
            {
                Type? type = Kernel.GetType(name);
                Assert.That(type, Is.Not.Null, $"{name} still exists (the test names real types)");
                Assert.That(type!.IsVisible, Is.False, $"{name} is internal to the kernel");
            }
        });
    }

    [Test]
    public void TheCheckFindsALeakWhenThereIsOne()
    {
        // The rule itself, on a type that does expose a core: a test double of what the boundary forbids.
        Assert.That(IsForbidden(typeof(LeakyHolder).GetProperty(nameof(LeakyHolder.Core))!.PropertyType), Is.True);
    }

    private sealed class LeakyHolder
    {
        public X86Core? Core => null;
    }
}
